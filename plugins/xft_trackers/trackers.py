"""Which trackers, set up how: installed-package checks, local defaults (files under `<run>/trackers`, wandb offline),
the run config as flat parameters, and trackers started and finished outside an Accelerator (for `xft eval`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from xft_core.hooks import PluginError

TRACKERS_FOLDER = "trackers"  # under the run folder: tensorboard/<project>/, mlruns/ (the MLflow file store), wandb/
PACKAGES = {  # tracker -> what to install for it (mlflow-skinny: the client without the server's dependencies)
    "tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb", "trackio": "trackio", "aim": "aim",
    "comet_ml": "comet_ml", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
}
PARAM_LIMIT = 500  # characters of one config value as a tracker parameter; longer ones (inline data) are summarised
_mlflow_uri: str | None = None  # the file store this plugin pointed MLflow at (a user's own URI is left alone)
_open: list[Any] = []  # trackers of a run that never reached xft_after_train (an exception): closed by the next run


def check_installed(report_to: Iterable[str], key: str = "training.report_to") -> list[str]:
    """The trackers, each known to Accelerate and installed; else a PluginError naming the package to install.
    (Accelerate itself only drops a tracker whose package is missing, with a debug message.)"""
    import accelerate.utils
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    names = list(dict.fromkeys(report_to))
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise PluginError(f"Unknown tracker '{name}' (config key: {key}). "
                              f"Available: {', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
        available = getattr(accelerate.utils, f"is_{name}_available", None)  # None: a tracker class registered by hand
        if available is not None and not available():
            extra = " (or `pip install 'xft[track]'` for tensorboard and mlflow)" if name in ("tensorboard", "mlflow") else ""
            raise PluginError(f"Tracker '{name}' (config key: {key}) needs the package {PACKAGES.get(name, name)}, which is "
                              f"not installed. Install it with `pip install {PACKAGES.get(name, name)}`{extra}, or remove "
                              f"'{name}' from {key}.")
    return names


def init_kwargs(report_to: list[str], folder: Path, run_name: str) -> dict[str, dict[str, Any]]:
    """Per-tracker arguments that keep everything local unless the user configured otherwise, and point MLflow at
    a file store in `folder` (unless MLFLOW_TRACKING_URI or `mlflow.set_tracking_uri` chose another store)."""
    kwargs: dict[str, dict[str, Any]] = {}
    if "mlflow" in report_to:
        use_mlflow_file_store(folder)
        kwargs["mlflow"] = {"run_name": run_name}
    if "wandb" in report_to:
        kwargs["wandb"] = {"name": run_name, "dir": os.environ.get("WANDB_DIR") or str(folder)}
        if not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
            kwargs["wandb"]["mode"] = "offline"  # `wandb sync` uploads it later; WANDB_MODE=online logs live
        folder.mkdir(parents=True, exist_ok=True)
    return kwargs


def use_mlflow_file_store(folder: Path) -> None:
    global _mlflow_uri
    import mlflow

    if mlflow.is_tracking_uri_set() and mlflow.get_tracking_uri() != _mlflow_uri:
        return
    # MLflow 3 keeps the file store in maintenance mode and refuses it unless told; a database store needs a
    # server-side stack (SQLAlchemy, Alembic) and writes beside the working directory. Files in the run folder
    # need nothing and travel with the run.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    _mlflow_uri = (folder / "mlruns").resolve().as_uri()
    mlflow.set_tracking_uri(_mlflow_uri)


def close_leftovers() -> None:
    """Finish the trackers a failed run left open (an MLflow run left active would refuse the next `start_run`)."""
    while _open:
        tracker = _open.pop()
        if tracker.name == "mlflow":
            import mlflow

            mlflow.end_run(status="FAILED")
        else:
            tracker.finish()


def remember(trackers: Iterable[Any]) -> None:
    _open.extend(trackers)


def finish(trackers: list[Any]) -> None:
    """Close every tracker (files flushed, runs ended), without Accelerator.end_training: that also destroys the
    process group, which the next run in the same process (notebooks, tests, torchrun scripts) still needs."""
    for tracker in trackers:
        tracker.finish()
        if tracker in _open:
            _open.remove(tracker)
    trackers.clear()


def start(report_to: list[str], folder: Path, project: str, run_name: str, config: Mapping[str, Any] | None = None) -> list[Any]:
    """Trackers started outside any Accelerator (nothing of Accelerate's process-wide state is touched), for logging
    that happens after training, such as a transfer matrix."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    close_leftovers()
    kwargs = init_kwargs(report_to, folder, run_name)
    trackers = []
    for name in report_to:
        cls = LOGGER_TYPE_TO_CLASS[name]
        tracker = cls(project, str(folder), **kwargs.get(name, {})) if cls.requires_logging_directory else \
            cls(project, **kwargs.get(name, {}))
        tracker.start()
        trackers.append(tracker)
        remember([tracker])
        if config:
            tracker.store_init_configuration(dict(config))
    return trackers


# ----------------------------------------------------------------------------------------- names and values
def safe_key(*parts: Any) -> str:
    """`eval/de/macro_f1`: every part reduced to letters, digits, `_ . -` (MLflow refuses others, such as the
    parentheses of `en (zero-shot)`), joined by `/`."""
    cleaned = [re.sub(r"[^\w.\-]+", "_", str(part)).strip("_.") or "_" for part in parts]
    return "/".join(cleaned)


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"training": {"learning_rate": 5e-3}}` -> `{"training.learning_rate": 5e-3}`: what every tracker accepts as
    parameters (numbers, text, booleans); lists as JSON, long values (inline data) as their size."""
    params: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{safe_key(key).replace('/', '_')}"
        if isinstance(value, Mapping) and value:
            params.update(flat_params(value, f"{name}."))
            continue
        if not isinstance(value, (bool, int, float, str)):
            value = json.dumps(value, ensure_ascii=False, default=str)
        if isinstance(value, str) and len(value) > PARAM_LIMIT:
            value = f"<{len(value)} characters>"
        params[name] = value
    return params


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values (no booleans): what a tracker logs as scalars."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
