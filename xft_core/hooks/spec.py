# mypy: disable-error-code="empty-body"
# (hookspecs are signature-only declarations: pluggy reads their names and argument names and never calls them)
"""Every xft extension point, in one place.

Registration hooks yield descriptor dataclasses from `xft_core.hooks.descriptors`; names are unique across installed
plugins (a duplicate is an error naming both providers). Lifecycle hooks are called by the engine with the
running `Run` object, for trackers, callbacks and early stopping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import pluggy

if TYPE_CHECKING:
    from xft_core.hooks.descriptors import (
        CommandSpec,
        DataSourceSpec,
        MetricSpec,
        ModelSourceSpec,
        QuantizerSpec,
        RecipeSpec,
        SamplerSpec,
        StrategySpec,
        TaskHeadSpec,
    )

PROJECT = "xft"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------------------------------------ registration
@hookspec
def xft_strategies() -> Iterable[StrategySpec]:
    """Declare fine-tuning strategies (which parameters train).

    Example::

        @hookimpl
        def xft_strategies():
            yield StrategySpec(name="bitfit", options=BitFitOptions, build=BitFit)
    """


@hookspec
def xft_samplers() -> Iterable[SamplerSpec]:
    """Declare language samplers (which language the next batch comes from).

    Example::

        @hookimpl
        def xft_samplers():
            yield SamplerSpec(name="uniform", build=lambda sizes, options, seed: Uniform(sizes, seed))
    """


@hookspec
def xft_task_heads() -> Iterable[TaskHeadSpec]:
    """Declare task heads (model class, collator, loss, decoding and metrics of one task).

    Example::

        @hookimpl
        def xft_task_heads():
            yield TaskHeadSpec(name="sequence-classification", options=ClsOptions, build=SequenceClassification)
    """


@hookspec
def xft_model_sources() -> Iterable[ModelSourceSpec]:
    """Declare where base models come from (a folder, a GGUF file, a package that ships weights).

    Example::

        @hookimpl
        def xft_model_sources():
            yield ModelSourceSpec(name="my-zoo", resolve=lambda ref, cache: Path(ZOO, ref) if ref in ZOO_IDS else None)
    """


@hookspec
def xft_data_sources() -> Iterable[DataSourceSpec]:
    """Declare where training and evaluation data come from (Parquet files, a saved `datasets` folder, the Hub).
    A source answers whether it reads a `data.path` reference and yields the rows per (language, split).

    Example::

        @hookimpl
        def xft_data_sources():
            yield DataSourceSpec(name="my-store", matches=lambda ref: ref.startswith("store:"),
                                 load=lambda request: read_store(request.reference), priority=10)
    """


@hookspec
def xft_metrics() -> Iterable[MetricSpec]:
    """Declare metrics usable in reports and for early stopping.

    Example::

        @hookimpl
        def xft_metrics():
            yield MetricSpec(name="accuracy", compute=lambda p, r: sum(a == b for a, b in zip(p, r)) / len(r))
    """


@hookspec
def xft_commands() -> Iterable[CommandSpec]:
    """Declare `xft` sub-commands; xft's own commands are declared through this hook too.

    Example::

        @hookimpl
        def xft_commands():
            yield CommandSpec(name="hello", register=lambda sub: sub.add_parser("hello").set_defaults(func=say_hello))
    """


@hookspec
def xft_transfer_recipes() -> Iterable[RecipeSpec]:
    """Declare recipes for the cross-lingual transfer suite (`xft bench transfer --list` shows them): a config
    fragment over the suite's base config, what the recipe needs besides labelled source rows, and how it is
    evaluated. Built-in recipes come from the plugins that own their head or strategy.

    Example::

        @hookimpl
        def xft_transfer_recipes():
            yield RecipeSpec(name="ia3-verbalizer", description="IA3 under prompt-based classification",
                             config=lambda task: {"task": "prompt-classification", "strategy": "ia3",
                                                  "task_options": {"template": task.template}})
    """


@hookspec
def xft_base_quantizers() -> Iterable[QuantizerSpec]:
    """Declare quantized forms of the frozen base (`training.base_dtype: <name>`), such as 4-bit NF4 for QLoRA.

    Example::

        @hookimpl
        def xft_base_quantizers():
            yield QuantizerSpec(name="nf4", quantize=to_nf4, description="4-bit NormalFloat (bitsandbytes)")
    """


# -------------------------------------------------------------------------------------------- lifecycle
@hookspec(historic=True)
def xft_configure(config: Any) -> None:
    """Called once with the resolved run config before anything loads; may read, not replace it.

    Example::

        @hookimpl
        def xft_configure(config):
            os.environ.setdefault("WANDB_PROJECT", config.name)
    """


@hookspec
def xft_before_train(run: Any) -> None:
    """Called after the model, data and optimizer are ready, before the first step.

    Example::

        @hookimpl
        def xft_before_train(run):
            run.console.print(f"{run.trainable_parameters:,} trainable parameters")
    """


@hookspec
def xft_after_step(run: Any, step: int, logs: dict[str, float]) -> None:
    """Called after each optimizer step with its values (step, lr, language); on the steps that log (every
    `training.log_every` and the last) also the mean loss and examples/s since the previous log, which are only
    then read from the device (a step that does not log never waits for it).

    Example::

        @hookimpl
        def xft_after_step(run, step, logs):
            tracker.log(logs, step=step)
    """


@hookspec
def xft_after_eval(run: Any, step: int, metrics: dict[str, dict[str, float]]) -> None:
    """Called after each evaluation with metrics per language; set `run.should_stop = True` to stop early.

    Example::

        @hookimpl
        def xft_after_eval(run, step, metrics):
            if metrics["en"]["macro_f1"] > 0.99:
                run.should_stop = True
    """


@hookspec
def xft_after_train(run: Any) -> None:
    """Called once after the final adapters/model are saved.

    Example::

        @hookimpl
        def xft_after_train(run):
            upload(run.paths.adapters)
    """


# ---------------------------------------------------------------------------------- one-answer questions
@hookspec(firstresult=True)
def xft_detect_language(text: str, candidates: list[str] | None) -> str | None:
    """Return the language code of `text` (restricted to `candidates` when given, and spelled as they are),
    or None to pass. The router asks this for rows sent with `language: auto`.

    Example::

        @hookimpl
        def xft_detect_language(text, candidates):
            return "de" if "ß" in text else None
    """


@hookspec(firstresult=True)
def xft_language_scores(text: str) -> dict[str, float] | None:
    """Return the probability of every language the detector knows for `text` (codes in any ISO 639 form,
    summing to about 1), or None to pass. The data check asks this to tell a row in a wrong language (another
    language clearly likelier, its own nearly ruled out) from a close call.

    Example::

        @hookimpl
        def xft_language_scores(text):
            return {"de": 0.9, "nl": 0.1} if "ß" in text else None
    """
