"""xft: cross-lingual fine-tuning with per-language adapters, language samplers and hot-swap inference.

The Python API in one place (the CLI calls the same functions)::

    import xft_core
    run = xft_core.train("examples/reviews.yaml", training={"max_steps": 20})
    result = xft_core.evaluate(run.paths.root, split="test")
    router = xft_core.Router.from_run(run.paths.root)
    exported = xft_core.export(run.paths.root, "exports/reviews", to="merged")

examples/python_api.py walks through all four, cell by cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xft_core.version import __version__

__all__ = ["__version__", "Router", "evaluate", "export", "load_config", "train"]

if TYPE_CHECKING:
    from xft_core.config import RunConfig
    from xft_core.evaluation import Evaluation
    from xft_core.export import Exported
    from xft_core.inference.router import Router
    from xft_core.training import Run


def train(config: Any, **overrides: Any) -> Run:
    """Fine-tune from a YAML path, a mapping or a RunConfig; keyword overrides use nested dicts.

    Example::

        run = xft_core.train("examples/reviews.yaml", training={"max_steps": 20}, name="quick")
    """
    from xft_core.training import train as _train

    resume = bool(overrides.pop("resume", False))
    progress = bool(overrides.pop("progress", True))
    pm = overrides.pop("pm", None)
    return _train(config, overrides=overrides or None, resume=resume, progress=progress, pm=pm)


def evaluate(sources: Any, data: Any = None, **options: Any) -> Evaluation:
    """The cross-lingual transfer matrix of run folders and adapter packages, with every report (`xft eval`)."""
    from xft_core.evaluation import evaluate as _evaluate

    return _evaluate(sources, data, **options)


def export(source: Any, out: Any, to: str = "merged", **options: Any) -> Exported:
    """Export one adapter package of a run folder or package (`xft export`): `to` is "merged" (a Hugging Face folder
    with the adapter folded into the weights), "vllm" / "lorax" (a generation LoRA adapter in their layout, with the
    serve command in its README) or "torchscript" (a traced classifier, checked for equal logits). Options:
    `adapter` (which package of several), `language` (madx), `max_length` (torchscript), `pm`.

    Example::

        exported = xft_core.export("runs/reviews", "exports/reviews-de", to="merged", adapter="de")
        model = transformers.AutoModelForSequenceClassification.from_pretrained(exported.path)
    """
    from xft_core.export import export as _export

    return _export(source, out, to, **options)


def load_config(source: Any, **overrides: Any) -> RunConfig:
    from xft_core.config import load_config as _load

    return _load(source, overrides or None)


def __getattr__(name: str) -> Any:
    if name == "Router":  # imported on first use: `import xft_core` stays free of torch
        from xft_core.inference.router import Router

        return Router
    raise AttributeError(f"module 'xft_core' has no attribute {name!r}")
