"""The one batched prediction loop, and scoring with the head's metrics.

Training (dev evaluation), the transfer matrix and the router all predict through `predict_rows`: rows in
batches, the model in eval mode without gradients, in the run's precision, each row optionally routed to its
own adapter by the strategy's per-row forward arguments.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from xft_core.hooks import ROW_LANGUAGE, PluginError, TaskHead
from xft_core.util.precision import autocast


def with_language(rows: Sequence[Mapping[str, Any]], language: str) -> list[dict[str, Any]]:
    """The rows as a task head sees them: each carries its language under `ROW_LANGUAGE` (for prompts)."""
    return [{**row, ROW_LANGUAGE: language} for row in rows]


def predict_rows(head: TaskHead, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, batch_size: int,
                 max_length: int, route: Mapping[str, Sequence[Any]] | None = None,
                 precision: str = "no") -> list[dict[str, Any]]:
    """`head.predict_batch` over `rows` in batches of `batch_size`. `route` holds per-row forward arguments
    (one entry per row, from `Strategy.route`), cut to each batch."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results: list[dict[str, Any]] = []
    try:
        with torch.no_grad(), autocast(precision, device):
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                kwargs = {key: list(values[start : start + batch_size]) for key, values in (route or {}).items()}
                results.extend(head.predict_batch(model, tokenizer, chunk, max_length=max_length, **kwargs))
    finally:
        model.train(was_training)
    if len(results) != len(rows):
        raise RuntimeError(f"task head returned {len(results)} predictions for {len(rows)} rows")
    return results


def score(head: TaskHead, pm: Any, predictions: Sequence[dict[str, Any]], rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The head's metrics (looked up among the `xft_metrics` plugins) for one language."""
    from xft_core.hooks.manager import collect

    metrics = collect(pm, "metrics")
    predicted, reference = head.metric_inputs(predictions, rows)
    out = {}
    for name in head.metric_names:
        if name not in metrics:
            raise PluginError(f"Metric '{name}' asked for by the task head is not installed. "
                              f"Available: {', '.join(sorted(metrics))}")
        out[name] = float(metrics[name].spec.compute(predicted, reference))
    return out


def average(metrics: Mapping[str, Mapping[str, float]], name: str) -> float:
    values = [m[name] for m in metrics.values() if name in m]
    return sum(values) / len(values) if values else float("nan")
