"""Training: `prepare` (plugins, data, model, strategy) then the Accelerate loop; checkpoints; the run's outputs."""

from xft_core.training.entry import train
from xft_core.training.loop import evaluate_dev
from xft_core.training.prepare import load_data, prepare, resolve_plugins
from xft_core.training.run import Run

__all__ = ["Run", "evaluate_dev", "load_data", "prepare", "resolve_plugins", "train"]
