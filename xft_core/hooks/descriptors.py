"""Descriptor dataclasses that plugins return from the registration hooks.

The engine reads only these descriptors: a capability the engine must know about (for example whether a
strategy can hold one adapter per language) is a field here, never a test on a plugin's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from xft_core.hooks.protocols import LanguageSampler, Strategy, TaskHead
from xft_core.util.errors import UserError


@dataclass(frozen=True, kw_only=True)
class NoOptions:
    """Options dataclass for plugins that take none."""


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    """A fine-tuning strategy: `build(options)` returns a `Strategy`."""

    name: str
    build: Callable[[Any], Strategy]
    options: type = NoOptions
    description: str = ""
    per_language: bool = False  # can hold one adapter per language in one model
    stackable: bool = False  # several packages can sit on one base that stays loaded (router, hot-swap)
    language_adapters: bool = False  # what runs depends on the rows' language (MAD-X): rows are grouped by language
    # trains over a quantized frozen base (training.base_dtype: nf4, ...): nothing of the base's own weights trains
    quantized_base: bool = False


@dataclass(frozen=True, kw_only=True)
class QuantizerSpec:
    """A quantized form of the frozen base weights, chosen by `training.base_dtype: <name>` (e.g. `nf4`, QLoRA).

    `quantize(model, keep=..., compute_dtype=..., device=..., training=...)` replaces the base's linear layers in
    place (except the modules named in `keep`, the task head's, and the output embeddings) and returns how many it
    replaced; it runs after the head built the model and before the strategy adapts it, in training (`training`:
    gradients must flow through the base to the adapters) and wherever a base is loaded for serving. `mergeable`:
    adapters can be merged into these weights as they are (`xft export --to merged`); when False, export merges
    into the full-precision base and says so."""

    name: str
    quantize: Callable[..., int]
    description: str = ""
    mergeable: bool = False


@dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    """A language sampler: `build(sizes per language, options, seed)` returns a `LanguageSampler`."""

    name: str
    build: Callable[[Mapping[str, int], Any, int], LanguageSampler]
    options: type = NoOptions
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class TaskHeadSpec:
    """A task head: `build(options)` returns a `TaskHead`."""

    name: str
    build: Callable[[Any], TaskHead]
    options: type = NoOptions
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ModelSourceSpec:
    """Turns a model reference from the config into a local Hugging Face folder (config, weights, tokenizer).

    `resolve(reference, cache_dir)` returns the folder, or None when the reference is not this source's.
    Sources are asked in order of `priority` (higher first)."""

    name: str
    resolve: Callable[[str, Path], Path | None]
    description: str = ""
    priority: int = 0


class DataSourceError(UserError):
    """Data a source recognised but cannot read (a missing column, an unknown split, a dataset not in the cache). The
    engine shows it as a data error with the message unchanged: name the file or id and the valid choices."""


@dataclass(frozen=True, kw_only=True)
class DataRequest:
    """What the run config asks of a data source (config key `data`)."""

    reference: str  # data.path as written (a folder, a file, hf://<id>, hub:<id>)
    language_field: str = "language"  # data.language_field: the column that holds each row's language
    split_field: str = "split"  # the column that holds each row's split, where a single table holds several
    languages: tuple[str, ...] = ()  # data.languages, else data.train_languages + data.eval_languages; empty: all


@dataclass(frozen=True, kw_only=True)
class DataPart:
    """The rows of one language in one split, as the `<lang>.<split>` file reader gives them: one dict per row with
    the fields the task head reads (text, label, ...). `origin` names where they came from in messages (a file, or
    an id and config); a row's number in it is its position, from 1."""

    language: str
    split: str
    rows: Sequence[Mapping[str, Any]]
    origin: str


@dataclass(frozen=True, kw_only=True)
class DataSourceSpec:
    """Reads the data a `data.path` reference names. `matches(reference)` says whether it is this source's (cheaply:
    a suffix, a marker file); `load(request)` yields a `DataPart` per (language, split). Sources are asked in order
    of `priority` (higher first); the first that matches reads it. References no source matches are read by xft's
    own reader of `<lang>.<split>.{jsonl,json,csv,tsv}` files, the fallback. Raise `DataSourceError` for data that
    cannot be read as asked."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[DataRequest], Iterable[DataPart]]
    description: str = ""
    priority: int = 0


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """A metric over (predictions, references). `compute(preds, refs) -> float`; higher is better unless
    `greater_is_better=False`."""

    name: str
    compute: Callable[[Sequence[Any], Sequence[Any]], float]
    greater_is_better: bool = True
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """An `xft` sub-command: `register(subparsers)` adds an argparse parser whose `func(args)` runs it.
    xft's own commands (train, eval, predict, serve, data, plugins) are declared the same way."""

    name: str
    register: Callable[[Any], None]
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class RecipeTask:
    """What a transfer-suite recipe is told of the task it is configured for (`RecipeSpec.config(task)`)."""

    name: str  # sib200, xnli, udpos, ...
    kind: str  # "classification" (one label per row) or "tagging" (one tag per word)
    source: str  # the labelled source language
    targets: tuple[str, ...]  # the zero-shot evaluation languages
    steps: int  # the training-step budget of the labelled part (the same for every recipe)
    batch_size: int
    max_length: int = 128
    template: str = "auto"  # a prompt template suited to the task (topic, nli, ...), for prompt-based heads
    label_words: Mapping[str, str] = field(default_factory=dict)  # label -> word, where a label name is not a word
    unlabelled_split: str = ""  # the split holding the targets' unlabelled text, when the suite provides it
    # run folders the suite trained for this task from `RecipeSpec.prepare` (name -> folder)
    resources: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # suite options (language_adapter_steps, ...)


@dataclass(frozen=True, kw_only=True)
class RecipeSpec:
    """A recipe of the transfer suite (`xft bench transfer`): how to train (and evaluate) on a task's labelled
    source language so that the model works zero-shot on the targets.

    `config(task)` returns the run-config keys of the recipe (`task`, `task_options`, `strategy`,
    `strategy_options`, and any `training`, `data`, `self_training` keys to change), merged over the suite's
    base config (name, model, data, the step budget, seed, precision). `task` and `strategy` are required.

    - `kinds`: the task kinds it applies to ("classification", "tagging").
    - `needs`: what it uses besides the labelled source rows: "unlabelled" (target-language text without labels,
      which the suite provides from rows disjoint from training and evaluation), "several_sources" (labelled data
      in more than one language); the suite reports it.
    - `prepare(task)`: runs the suite trains once per task before the recipe's runs (MAD-X's language adapters):
      {resource name: run-config keys}; their folders reach `config` as `task.resources[name]`.
    - `derived_from`: evaluate that recipe's trained adapters instead of training (no training cost), with
      `evaluation` options: {"scale": 0.5} (WiSE-FT), {"calibration": "batch" | "batch-log" | "contextual" | "domain"}
      (estimated per target language from its unlabelled text, or from content-free inputs).
    - `teacher_from`: a self-training recipe's teacher is that recipe's trained run of the same task and seed
      (`self_training.teacher`), so round 0 is not trained again; its cost is the labelling and the student's steps.
    - `baseline`: the recipe the suite compares every other with (one installed recipe at most).
    - `default`: run when `--recipes` is not given.
    """

    name: str
    description: str
    config: Callable[[RecipeTask], Mapping[str, Any]]
    kinds: tuple[str, ...] = ("classification",)
    needs: tuple[str, ...] = ()
    prepare: Callable[[RecipeTask], Mapping[str, Mapping[str, Any]]] | None = None
    derived_from: str = ""
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    teacher_from: str = ""
    baseline: bool = False
    default: bool = False


Spec = (StrategySpec | SamplerSpec | TaskHeadSpec | ModelSourceSpec | DataSourceSpec | MetricSpec | CommandSpec
        | RecipeSpec | QuantizerSpec)

KINDS: dict[str, type[Spec]] = {
    "strategies": StrategySpec,
    "samplers": SamplerSpec,
    "task_heads": TaskHeadSpec,
    "model_sources": ModelSourceSpec,
    "data_sources": DataSourceSpec,
    "metrics": MetricSpec,
    "commands": CommandSpec,
    "transfer_recipes": RecipeSpec,
    "base_quantizers": QuantizerSpec,
}

SINGULAR = {"strategies": "strategy", "samplers": "sampler", "task_heads": "task head", "model_sources": "model source",
            "data_sources": "data source", "metrics": "metric", "commands": "command",
            "transfer_recipes": "transfer recipe", "base_quantizers": "base quantizer"}
