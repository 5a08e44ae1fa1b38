"""Tables (languages x metrics, adapters x languages) in the form each tracker shows best: TensorBoard text
(Markdown), an MLflow JSON artifact, a wandb Table. Every tracker also gets the same numbers as scalars."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from xft_trackers.trackers import numbers, safe_key


def metric_names(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for cells in metrics.values() for name in numbers(cells)))


def language_scalars(prefix: str, metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """`{prefix}/<language>/<metric>` for every language, and `{prefix}/mean/<metric>` over the languages."""
    values = {safe_key(prefix, language, name): value for language, cells in metrics.items()
              for name, value in numbers(cells).items()}
    for name in metric_names(metrics):
        scores = [cells[name] for cells in metrics.values() if name in numbers(cells)]
        values[safe_key(prefix, "mean", name)] = sum(scores) / len(scores)
    return values


def markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dev_table(metrics: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): one row per dev language and one for the mean, one column per metric."""
    names = metric_names(metrics)
    rows: list[list[Any]] = [[language, *(numbers(cells).get(n) for n in names)] for language, cells in metrics.items()]
    means = language_scalars("m", metrics)
    rows.append(["mean", *(means.get(safe_key("m", "mean", n)) for n in names)])
    return ["language", *names], rows


def transfer_table(matrix: Mapping[str, Any], metric: str) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of one metric of a transfer matrix (its `to_dict()`): adapters (rows) x languages."""
    languages = list(matrix["languages"])
    rows = [[row["label"], *(row["cells"].get(lang, {}).get(metric) for lang in languages)] for row in matrix["rows"]]
    return ["adapter", *languages], rows


def transfer_scalars(matrix: Mapping[str, Any]) -> dict[str, float]:
    """`transfer/<split>/<adapter>/<language>/<metric>` for every cell, and `transfer/<split>/<adapter>/<summary>`
    (average, in_language, transfer, transfer_gap, vs_zero_shot) of the primary metric."""
    split = matrix.get("split") or "test"
    values = {safe_key("transfer", split, row["label"], language, name): value
              for row in matrix["rows"] for language, cells in row["cells"].items() for name, value in numbers(cells).items()}
    primary = matrix.get("primary") or matrix["metrics"][0]
    for label, summary in matrix.get("summary", {}).get(primary, {}).items():
        values.update({safe_key("transfer", split, label, name): value for name, value in numbers(summary).items()})
    return values


def log_table(trackers: Sequence[Any], name: str, table: tuple[list[str], list[list[Any]]], step: int,
              document: Mapping[str, Any]) -> None:
    """One table on every tracker that has a form for it: TensorBoard text, MLflow `<name>.json` (the whole
    `document`), wandb Table. Others (trackio, ...) get the scalars only."""
    columns, rows = table
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.tracker.add_text(name, markdown(columns, rows), global_step=step)
            tracker.tracker.flush()
        elif tracker.name == "mlflow":
            import mlflow

            mlflow.log_dict(json.loads(json.dumps(document, default=str)), f"{name}.json")
        elif tracker.name == "wandb":
            tracker.log_table(name, columns=columns, data=rows, step=step)


def log_summary(trackers: Sequence[Any], summary: Mapping[str, Any], step: int) -> None:
    """The run summary (`run.json`): an MLflow artifact, wandb's run summary, TensorBoard text."""
    for tracker in trackers:
        if tracker.name == "tensorboard":
            text = "```\n" + json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n```"
            tracker.tracker.add_text("run_summary", text, global_step=step)
            tracker.tracker.flush()
        elif tracker.name == "mlflow":
            import mlflow

            mlflow.log_dict(json.loads(json.dumps(summary, default=str)), "run_summary.json")
        elif tracker.name == "wandb":
            tracker.tracker.summary.update(numbers(summary))
