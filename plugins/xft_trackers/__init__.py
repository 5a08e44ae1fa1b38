"""Built-in plugin `xft_trackers`: experiment tracking through Accelerate's trackers (`training.report_to`).

The engine builds the Accelerator with `log_with=training.report_to` and `project_dir=<run>/trackers`; this plugin
does the rest from the lifecycle hooks, on the main process only (Accelerate's `init_trackers` and `log` run there
and nowhere else):

- `xft_configure`: every named tracker must be installed (Accelerate would drop a missing one silently);
- `xft_before_train`: `init_trackers(<run name>, config=<the run config, flattened>)`;
- `xft_after_step`: `train/loss`, `train/lr`, `train/examples_per_second`, `train/examples_seen/<language>` at log steps;
- `xft_after_eval`: `eval/<language>/<metric>` and `eval/mean/<metric>`;
- `xft_after_train`: the final dev metrics (`final/...` scalars and a languages x metrics table), the run summary
  (`summary/...` scalars and `run.json`), then every tracker is finished.

Local by default: TensorBoard writes `<run>/trackers/<run name>/`, MLflow a file store `<run>/trackers/mlruns`
unless MLFLOW_TRACKING_URI (or `mlflow.set_tracking_uri`) names another, wandb runs offline unless WANDB_MODE or
WANDB_API_KEY is set, trackio stores locally. `log_transfer_matrix` logs a transfer matrix (`xft eval`) the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from xft_core.hooks import hookimpl
from xft_trackers.tables import dev_table, language_scalars, log_summary, log_table, transfer_scalars, transfer_table
from xft_trackers.trackers import (
    TRACKERS_FOLDER,
    check_installed,
    close_leftovers,
    finish,
    flat_params,
    init_kwargs,
    numbers,
    remember,
    safe_key,
    start,
)

__all__ = ["TRACKERS_FOLDER", "log_transfer_matrix"]


def _report_to(config: Any) -> list[str]:
    return list(getattr(getattr(config, "training", None), "report_to", None) or ())


@hookimpl
def xft_configure(config: Any) -> None:
    if _report_to(config):
        check_installed(_report_to(config))


@hookimpl
def xft_before_train(run: Any) -> None:
    report_to = _report_to(run.config)
    accelerator = run.accelerator
    if not report_to or not accelerator.is_main_process:
        return
    folder = Path(accelerator.project_dir) if accelerator.project_dir else run.paths.root / TRACKERS_FOLDER
    close_leftovers()
    name = run.config.name
    accelerator.init_trackers(name, config=flat_params(run.config.to_dict()), init_kwargs=init_kwargs(report_to, folder, name))
    remember(accelerator.trackers)


@hookimpl
def xft_after_step(run: Any, step: int, logs: dict[str, Any]) -> None:
    if not run.accelerator.trackers or "examples_per_second" not in logs:  # only the steps the loop logs
        return
    values = {"train/loss": logs["loss"], "train/lr": logs["lr"], "train/examples_per_second": logs["examples_per_second"]}
    values.update({safe_key("train", "examples_seen", language): n for language, n in logs.get("examples_seen", {}).items()})
    run.accelerator.log(values, step=step)


@hookimpl
def xft_after_eval(run: Any, step: int, metrics: dict[str, dict[str, float]]) -> None:
    if run.accelerator.trackers and metrics:
        run.accelerator.log(language_scalars("eval", metrics), step=step)


@hookimpl
def xft_after_train(run: Any) -> None:
    accelerator = run.accelerator
    if not accelerator.trackers:
        return
    summary = json.loads(run.paths.run_info.read_text(encoding="utf-8")) if run.paths.run_info.is_file() else {}
    scalars = language_scalars("final", run.metrics) if run.metrics else {}
    scalars.update({safe_key("summary", key): value for key, value in numbers(summary).items()})
    accelerator.log(scalars, step=run.step)
    if run.metrics:
        log_table(accelerator.trackers, "dev_metrics", dev_table(run.metrics), run.step,
                  {"step": run.step, "metrics": run.metrics})
    if summary:
        log_summary(accelerator.trackers, summary, run.step)
    finish(accelerator.trackers)


@hookimpl(optionalhook=True)  # live once the engine declares it (xft eval --report-to); harmless until then
def xft_after_evaluate(matrix: Any, report_to: list[str], run_dir: Path) -> None:
    if report_to:
        log_transfer_matrix(matrix, report_to, run_dir)


# -------------------------------------------------------------------------------------------------- API
def log_transfer_matrix(matrix: Any, report_to: Iterable[str], run_dir: str | Path, *, project: str | None = None,
                        step: int = 0) -> Path:
    """Log a transfer matrix (a `TransferMatrix`, or its `to_dict()` as in `report/transfer.json`) to trackers:
    `transfer/<split>/<adapter>/<language>/<metric>` and the primary metric's summary per adapter as scalars, the
    adapters x languages table where the tracker has tables. Local trackers write under `<run_dir>/trackers`, so the
    matrix sits beside the run's training curves (same TensorBoard folder, same MLflow experiment). Returns that folder.

    Example::

        matrix = transfer_matrix("runs/per-lang", split="test")
        log_transfer_matrix(matrix, ["tensorboard", "mlflow"], "runs/per-lang")
    """
    document: Mapping[str, Any] = matrix.to_dict() if hasattr(matrix, "to_dict") else dict(matrix)
    names = check_installed(report_to, key="--report-to")
    folder = Path(run_dir) / TRACKERS_FOLDER
    project = project or Path(run_dir).resolve().name
    split = document.get("split") or "test"
    if not names:
        return folder
    about = {"split": split, "task": document.get("task", ""), "base_model": document.get("base_model", ""),
             "languages": ",".join(document["languages"]), "adapters": ",".join(r["label"] for r in document["rows"])}
    trackers = start(names, folder, project, f"{project}-transfer-{split}", config=about)
    try:
        for tracker in trackers:
            tracker.log(transfer_scalars(document), step=step)
        primary = document.get("primary") or document["metrics"][0]
        log_table(trackers, f"transfer_matrix_{safe_key(split)}", transfer_table(document, primary), step, document)
    finally:
        finish(trackers)
    return folder
