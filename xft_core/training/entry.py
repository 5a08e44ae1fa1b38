"""`train`: one run as the config says; with `self_training.rounds`, round after round on pseudo-labelled text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from xft_core.config import RunConfig, load_config
from xft_core.training import loop
from xft_core.training.run import Run
from xft_core.training.self_training import self_train


def train(
    config: str | Path | Mapping[str, Any] | RunConfig,
    *,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    pm: Any = None,
    console: Any = None,
    progress: bool = True,
) -> Run:
    """Fine-tune as the config says; returns the finished `Run` (metrics, history, paths). A config with
    `self_training.rounds` trains round 0 on its labelled data, then each round on the target languages'
    pseudo-labelled unlabelled text (training/self_training.py).

    Example::

        run = xft_core.train("examples/reviews.yaml", training={"max_steps": 20})
        print(run.metrics["de"]["macro_f1"], run.adapter_dirs)
    """
    config = load_config(config, overrides)
    if config.self_training.rounds:
        return self_train(config, resume=resume, pm=pm, console=console, progress=progress)
    return loop.run_loop(config, resume=resume, pm=pm, console=console, progress=progress)
