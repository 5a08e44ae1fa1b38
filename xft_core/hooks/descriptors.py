"""Descriptor dataclasses that plugins return from the registration hooks.

The engine reads only these descriptors: a capability the engine must know about (for example whether a
strategy can hold one adapter per language) is a field here, never a test on a plugin's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from xft_core.hooks.protocols import LanguageSampler, Strategy, TaskHead


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


class DataSourceError(ValueError):
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


Spec = StrategySpec | SamplerSpec | TaskHeadSpec | ModelSourceSpec | DataSourceSpec | MetricSpec | CommandSpec

KINDS: dict[str, type[Spec]] = {
    "strategies": StrategySpec,
    "samplers": SamplerSpec,
    "task_heads": TaskHeadSpec,
    "model_sources": ModelSourceSpec,
    "data_sources": DataSourceSpec,
    "metrics": MetricSpec,
    "commands": CommandSpec,
}

SINGULAR = {"strategies": "strategy", "samplers": "sampler", "task_heads": "task head", "model_sources": "model source",
            "data_sources": "data source", "metrics": "metric", "commands": "command"}
