"""Descriptor dataclasses that plugins return from the registration hooks.

The engine reads only these descriptors: a capability the engine must know about (for example whether a
strategy can hold one adapter per language) is a field here, never a test on a plugin's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence


@dataclass(frozen=True, kw_only=True)
class NoOptions:
    """Options dataclass for plugins that take none."""


# --------------------------------------------------------------------------------------------- strategy
class Strategy(Protocol):
    """What `StrategySpec.build` returns: one strategy bound to its options."""

    def apply(self, model: Any, head: "TaskHead", languages: Sequence[str] | None) -> Any:
        """Return the model to train. `languages` is None for one shared set of weights, or the
        languages that get one adapter each (only asked of strategies with `per_language=True`)."""

    def activate(self, model: Any, language: str | None) -> None:
        """Make `language`'s adapter the one that trains and runs (no-op without per-language adapters)."""

    def save(self, model: Any, folder: Path, language: str | None) -> None:
        """Write the trained weights of `language` (or the single set) into `folder`."""

    def load(self, base_model: Any, folder: Path, name: str) -> Any:
        """Load saved weights from `folder` onto `base_model` under adapter name `name`; return the model."""


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    name: str
    build: Callable[[Any], Strategy]
    options: type = NoOptions
    description: str = ""
    per_language: bool = False  # can hold one adapter per language in one model
    mixed_batch: bool = False  # can run rows of different adapters in one forward pass
    stackable: bool = False  # adapters can be loaded onto a base that stays loaded (hot-swap)


# ---------------------------------------------------------------------------------------------- sampler
class LanguageSampler(Protocol):
    """What `SamplerSpec.build` returns. Draws the language of the next batch."""

    languages: list[str]
    counts: dict[str, int]  # examples drawn so far per language

    def probabilities(self) -> dict[str, float]:
        """The target share of each language (sums to 1)."""

    def next_language(self) -> str: ...

    def record(self, language: str, examples: int) -> None:
        """Count `examples` drawn from `language` (the engine calls this for every batch)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    name: str
    build: Callable[[Mapping[str, int], Any, int], LanguageSampler]  # (sizes per language, options, seed)
    options: type = NoOptions
    description: str = ""


# -------------------------------------------------------------------------------------------- task head
ROW_LANGUAGE = "__language__"
"""Key under which a task head finds each row's language in the rows given to `encode` and `predict`
(the engine adds it; heads that need no language ignore it). Never a field of the data files."""


class TaskHead(Protocol):
    """What `TaskHeadSpec.build` returns: everything task-specific, from rows to metrics."""

    required_fields: tuple[str, ...]

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        """Return an error message for a malformed row, or None."""

    def fit_labels(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """See the training rows once to fix the label set (no-op for generation)."""

    def label_info(self) -> dict[str, Any]:
        """What must be stored with the run to rebuild this head (for example the label list)."""

    def load_label_info(self, info: Mapping[str, Any]) -> None: ...

    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        """Load the base model from a local Hugging Face folder with this task's head on it."""

    def head_modules(self, model: Any) -> list[str]:
        """Names of modules that are task-head weights (trained alongside adapters, saved beside them)."""

    def lora_task_type(self) -> str | None:
        """peft TaskType name for this head, or None."""

    def encode(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> list[dict]:
        """Tokenize rows once; the result is cached for the run."""

    def collate(self, features: Sequence[dict], tokenizer: Any) -> dict[str, Any]:
        """Pad a list of encoded rows into a batch of tensors the model's forward accepts (with labels)."""

    def predict(
        self, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, batch_size: int, max_length: int,
        adapter_names: Sequence[str] | None = None,
    ) -> list[dict]:
        """Predictions for raw rows: one dict per row (label, scores, ...). `adapter_names` (one per row)
        asks a multi-adapter model to run each row through its own adapter in the same forward pass."""

    metric_names: tuple[str, ...]  # metrics (from `xft_metrics` plugins) to report; the first is primary

    # Optional, for inference on raw text (`xft predict`, `xft serve`): `input_row(text) -> row` builds this
    # head's input row from a plain string (default: {options.text_field: text}), and `input_text(row) -> str`
    # gives the text to detect the language of (default: row[options.text_field]).

    def metric_inputs(self, predictions: Sequence[dict], rows: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
        """(predicted values, reference values) for the metric functions."""


@dataclass(frozen=True, kw_only=True)
class TaskHeadSpec:
    name: str
    build: Callable[[Any], TaskHead]
    options: type = NoOptions
    description: str = ""


# ----------------------------------------------------------------------------------------- model source
@dataclass(frozen=True, kw_only=True)
class ModelSourceSpec:
    """Turns a model reference from the config into a local Hugging Face folder (config, weights, tokenizer).

    `resolve(reference, cache_dir)` returns the folder, or None when the reference is not this source's.
    Sources are asked in order of `priority` (higher first)."""

    name: str
    resolve: Callable[[str, Path], Path | None]
    description: str = ""
    priority: int = 0


# ---------------------------------------------------------------------------------------------- metric
@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """A metric over (predictions, references). `compute(preds, refs) -> float`; higher is better unless
    `greater_is_better=False`."""

    name: str
    compute: Callable[[Sequence[Any], Sequence[Any]], float]
    task_kinds: tuple[str, ...] = ()
    greater_is_better: bool = True
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """An extra `xft` sub-command: `register(subparsers)` adds an argparse parser whose `func` runs it."""

    name: str
    register: Callable[[Any], None]
    description: str = ""


KINDS = {
    "strategies": StrategySpec,
    "samplers": SamplerSpec,
    "task_heads": TaskHeadSpec,
    "model_sources": ModelSourceSpec,
    "metrics": MetricSpec,
    "commands": CommandSpec,
}

SINGULAR = {"strategies": "strategy", "samplers": "sampler", "task_heads": "task head", "model_sources": "model source",
            "metrics": "metric", "commands": "command"}
