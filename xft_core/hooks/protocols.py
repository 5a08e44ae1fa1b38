"""What the objects that plugins build must do: a strategy, a task head, a language sampler.

The engine, the evaluation and the router talk to these protocols only. A strategy owns every call that
changes the model (attaching, activating, routing rows, detaching, saving and loading its files), so a method
that is not peft (BitFit, a plugin's own) is as much at home as LoRA; a task head owns everything
task-specific, from rows to metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Literal, Mapping, Protocol, Sequence, TypeAlias, runtime_checkable

BASE_ADAPTER = "__base__"
"""Per-row adapter name that means "the base model, no adapter" (in `Strategy.route` and the router)."""

ROW_LANGUAGE = "__language__"
"""Key under which a task head finds each row's language in the rows given to `encode` and `predict_batch`
(the engine adds it; heads that need no language ignore it). Never a field of the data files."""

ModelKind: TypeAlias = Literal["sequence-classification", "token-classification", "prompt-classification", "causal-lm",
                               "seq2seq", "masked-lm"]
"""The kinds of model a task head builds (`TaskHead.model_kind`). `prompt-classification`: a classifier that scores
label words with a language model's own LM head (the built-in `xft_verbalizer`)."""


# --------------------------------------------------------------------------------------------- strategy
@runtime_checkable
class Strategy(Protocol):
    """What `StrategySpec.build` returns: one strategy bound to its options.

    Training calls `apply`, `activate`, `init_from` and `save`; evaluation and the router call `attach`,
    `activate`, `route`, `base_only` and `detach`; export calls `attach`, then `merge`. `model` is whatever the
    previous call returned (a plain transformers model, or the strategy's own wrapper around it)."""

    mixed_batch: bool
    """Rows of different adapters can share one forward pass (through `route`)."""

    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        """Return the model to train. `adapters` is None for one shared set of weights, or the names that get
        one adapter each (only asked of strategies whose spec says `per_language=True`). The names of trainable
        parameters must not depend on the active adapter: checkpoints save and restore them by name."""

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        """Make `adapter` the one that trains and runs (None: the single set of weights). `language` is the
        language of the rows about to run; strategies whose spec says `language_adapters=True` (MAD-X) pick
        that language's adapter under the task adapter, others ignore it."""

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start every adapter in `adapters` from the package saved in `folder` (config key `init_from`)."""

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> Mapping[str, Any] | None:
        """Write the trained weights of `adapter` (None: the single set), task-head weights included, into `folder`.
        May return entries for the package's manifest, e.g. `{"serves": [...]}`: the languages the package can
        answer beyond those it was trained on (MAD-X: every language with a language adapter)."""

    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        """Load the package in `folder` onto `model` (the base, or a model already carrying adapters) as `name`;
        return the model to run. All or nothing: if it raises, `model` must be as before."""

    def detach(self, model: Any, name: str) -> Any:
        """Remove adapter `name` and free its memory; return the model to run from now on."""

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """Scale what adapter `adapter` changes by `factor`: 0 gives the base model, 1 the adapter as trained, in
        between an interpolation toward the base (WiSE-FT; new task-head weights are not interpolated)."""

    def base_only(self, model: Any) -> ContextManager[Any]:
        """A context in which `model` computes exactly what the base model computes."""

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        """Forward keyword arguments that send row i through adapter `names[i]` (`BASE_ADAPTER`: none), one list
        entry per row, so that a batch cut into pieces can cut them too. Asked only when `mixed_batch` is True."""

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """Return a plain transformers model (no wrapper of the strategy's) computing what `model` computes with
        `adapter` active, its change folded into the weights (`xft export --to merged`). `model` is consumed: it
        may be changed in place, and other attached adapters are dropped. `language` as in `activate`. A strategy
        whose change is not a weight change (a soft prompt) raises NotImplementedError saying why."""

    def leftovers(self, model: Any) -> list[str]:
        """What of this strategy's own machinery is still in `model` (module names, attributes), so an empty list
        for the plain model that `merge` must return: `xft export --to merged` asks after merging and refuses a
        model with leftovers, naming them. Optional: a strategy without it (its `merge` returns the model it was
        given, as `full` does) is not asked."""


@runtime_checkable
class Combining(Protocol):
    """An optional capability of a `Strategy`: merging attached adapters into a new one. The router serves a
    language that has no adapter with a merge of its nearest languages' adapters when the strategy has it
    (`isinstance(strategy, Combining)`); strategies without it can still serve such a language with an ensemble."""

    def combine(self, model: Any, weights: Mapping[str, float], name: str) -> Any:
        """Attach a new adapter `name` computing the weighted combination of the attached adapters in `weights`
        (adapter -> weight; for LoRA the weighted sum of their updates, so one adapter at weight 1 is that adapter);
        return the model to run. The new adapter is saved, detached and scaled like any other (`save`, `detach`)."""


# -------------------------------------------------------------------------------------------- task head
@dataclass(frozen=True)
class RowFields:
    """Which fields of a data row hold what, so that data checks and inference need not guess."""

    text: str  # the main input: a string, or a list of words (tagging)
    pair: str | None = None  # a second input text (NLI hypothesis)
    label: str | None = None  # one label per row
    tags: str | None = None  # one tag per word
    target: str | None = None  # the text to generate


@runtime_checkable
class TaskHead(Protocol):
    """What `TaskHeadSpec.build` returns: everything task-specific, from rows to metrics."""

    fields: RowFields
    model_kind: str  # one of ModelKind for the built-in heads; strategies map it to their own task types
    metric_names: tuple[str, ...]  # metrics (from `xft_metrics` plugins) to report; the first is primary

    @property
    def required_fields(self) -> tuple[str, ...]: ...

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        """Return an error message for a malformed row, or None."""

    def fit_labels(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """See the training rows once to fix the label set (no-op for generation)."""

    def label_info(self) -> dict[str, Any]:
        """What must be stored with the run to rebuild this head (for example the label list). A head may also set
        `adopted_label_info` (a tuple of these keys): details a run started from a package (`init_from`) takes
        from that package instead of requiring them equal, because no weight depends on them (a tagger's fallback
        tag, for example). Every other key must match the package's."""

    def load_label_info(self, info: Mapping[str, Any]) -> None: ...

    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        """Load the base model from a local Hugging Face folder with this task's head on it."""

    def head_modules(self, model: Any) -> list[str]:
        """Names of modules that are new task-head weights (trained alongside adapters, saved with them)."""

    def encode(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        """Tokenize rows once; the result is cached for the run."""

    def collate(self, features: Sequence[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
        """Pad encoded rows into a batch of tensors the model's forward accepts (with labels when known)."""

    def predict_batch(self, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, max_length: int,
                      **forward_kwargs: Any) -> list[dict[str, Any]]:
        """Predictions for one batch of raw rows (label, scores, tags or text per row). The caller has put the
        model in eval mode without gradients; `forward_kwargs` (per-row adapter routing) go to the forward."""

    def input_row(self, text: str) -> dict[str, Any]:
        """This head's input row for a plain string (`xft predict`, `xft serve`)."""

    def input_text(self, row: Mapping[str, Any]) -> str:
        """The text of a row whose language is to be detected."""

    def metric_inputs(self, predictions: Sequence[dict[str, Any]],
                      rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Any]]:
        """(predicted values, reference values) for the metric functions."""


@runtime_checkable
class AdaptsToData(Protocol):
    """Optional for a task head: choices it settles from labelled source rows before training (the verbalizer's
    `template: auto` picks its prompt template). The engine calls `adapt` once per run, after the model is built and
    before any row is encoded, with rows of the source language (its dev split, else its first training rows),
    `predict(rows)` (the model's predictions, as evaluation makes them) and `score(predictions, rows)` (the head's
    primary metric). Whatever it settles must reach `label_info`, so that a package predicts as it was trained."""

    def adapt(self, rows: Sequence[Mapping[str, Any]], predict: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]],
              score: Callable[[Sequence[dict[str, Any]], Sequence[Mapping[str, Any]]], float]) -> str | None:
        """Settle the choices; return one line saying what was chosen and why (printed), or None."""


# ---------------------------------------------------------------------------------------------- sampler
@runtime_checkable
class LanguageSampler(Protocol):
    """What `SamplerSpec.build` returns. Draws the language of the next batch."""

    languages: list[str]
    counts: dict[str, int]  # examples drawn so far per language

    def probabilities(self) -> dict[str, float]:
        """The target share of each language (sums to 1)."""

    def set_progress(self, done: float) -> None:
        """The share of training done (0 to 1), told before every draw; samplers with a schedule use it."""

    def next_language(self) -> str: ...

    def record(self, language: str, examples: int) -> None:
        """Count `examples` drawn from `language` (the engine calls this for every batch)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
