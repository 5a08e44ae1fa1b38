"""xft: cross-lingual fine-tuning with per-language adapters, language samplers and hot-swap inference."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "train", "load_config"]


def train(config: Any, **overrides: Any) -> Any:
    """Fine-tune from a YAML path, a mapping or a RunConfig; keyword overrides use nested dicts.

    Example::

        run = xft_core.train("examples/reviews.yaml", training={"max_steps": 20}, name="quick")
    """
    from xft_core.training.engine import train as _train

    resume = bool(overrides.pop("resume", False))
    progress = bool(overrides.pop("progress", True))
    pm = overrides.pop("pm", None)
    return _train(config, overrides=overrides or None, resume=resume, progress=progress, pm=pm)


def load_config(source: Any, **overrides: Any) -> Any:
    from xft_core.config import load_config as _load

    return _load(source, overrides or None)
