"""Figures: the transfer-matrix heatmap and a run's training curves.

matplotlib is imported inside the functions and used through `Figure` objects (Agg canvas, no pyplot), so
importing this module is free and drawing never touches a global backend or an open window.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from xft_core.util.runfiles import METRICS, read_metrics_log

SUMMARY = (("average", "average"), ("transfer", "transfer"))  # (summary key, column label) drawn after a gap


def fmt(value: float | None, scale: float) -> str:
    """A cell: one decimal for metrics on a 0-100 scale, three for 0-1; '-' for none."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.1f}" if scale > 1.5 else f"{value:.3f}"


def value_scale(matrix: Any, metric: str) -> float:
    return max((abs(v) for row in matrix.values(metric) for v in row if v is not None and not math.isnan(v)), default=1.0)


# ----------------------------------------------------------------------------------------------- figures
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _is_number(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def transfer_heatmap(matrix: Any, out_png: str | Path, *, metric: str | None = None) -> Path:
    """Heatmap of one metric: adapters (rows) x evaluation languages (columns), and beside it the average
    and transfer columns. Boxed cells are the row's training languages. Readable up to ~50 languages: the
    figure widens with the columns, labels rotate, and values are written in cells up to 20 languages."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    metric = metric or matrix.primary
    languages = list(matrix.languages)
    summary = matrix.summary(metric)
    grid = np.array([[v if _is_number(v) else math.nan for v in row] for row in matrix.values(metric)], dtype=float)
    side = np.array([[summary[r.label][key] if _is_number(summary[r.label][key]) else math.nan for key, _ in SUMMARY]
                     for r in matrix.rows], dtype=float)
    n_rows, n_cols = grid.shape
    show_values = n_cols <= 20

    finite = np.concatenate([grid[np.isfinite(grid)], side[np.isfinite(side)]])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.05 * (abs(low) or 1), high + 0.05 * (abs(high) or 1)
    higher_is_better = matrix.greater_is_better.get(metric, True)
    cmap = colormaps["viridis" if higher_is_better else "viridis_r"].with_extremes(bad="#e6e6e6")
    norm = Normalize(low, high)
    digits = "{:.0f}" if max(abs(low), abs(high)) > 10 else "{:.2f}"

    label_chars = max([len(r.label) for r in matrix.rows] + [8])
    cell_w = 0.6 if show_values else 0.3
    cell_h = 0.48 if show_values else 0.4
    width = max(7.5, 0.08 * label_chars + cell_w * n_cols + 0.62 * len(SUMMARY) + 1.6)
    height = max(2.8, cell_h * n_rows + 2.0 + 0.07 * max(len(lang) for lang in languages))
    figure = _figure(width, height)
    grid_ax, side_ax = figure.subplots(1, 2, sharey=True, width_ratios=[max(n_cols * cell_w, 0.9), 0.62 * len(SUMMARY)])
    figure.get_layout_engine().set(wspace=0.02, w_pad=0.05)
    image = grid_ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    side_ax.imshow(np.ma.masked_invalid(side), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")

    def write(ax: Any, i: int, j: int, value: float, size: int) -> None:
        if not np.isfinite(value):
            ax.text(j, i, "–", ha="center", va="center", fontsize=size, color="#777777")
            return
        r, g, b, _ = cmap(norm(value))
        ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        ax.text(j, i, digits.format(value), ha="center", va="center", fontsize=size, color=ink)

    for i, row in enumerate(matrix.rows):
        for j, language in enumerate(languages):
            if row.kind == "adapter" and language in row.sources:
                grid_ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="#e8112d", linewidth=2))
            if show_values:
                write(grid_ax, i, j, grid[i, j], 8)
        for j in range(len(SUMMARY)):
            write(side_ax, i, j, side[i, j], 8)

    grid_ax.set_yticks(range(n_rows), [r.label for r in matrix.rows])
    grid_ax.set_xticks(range(n_cols), languages)
    rotate = n_cols > 8 or max(len(lang) for lang in languages) > 5
    if rotate:
        grid_ax.tick_params(axis="x", labelrotation=60 if n_cols > 20 else 45)
        for tick in grid_ax.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    grid_ax.tick_params(axis="x", labelsize=9 if show_values else 8)
    side_ax.set_xticks(range(len(SUMMARY)), [label for _, label in SUMMARY], fontsize=8, fontweight="bold")
    side_ax.tick_params(axis="y", left=False, labelleft=False)
    for ax in (grid_ax, side_ax):
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    grid_ax.set_xlabel("evaluation language")
    grid_ax.set_ylabel("adapter")
    direction = "higher is better" if higher_is_better else "lower is better"
    figure.suptitle(f"Cross-lingual transfer: {metric} on {matrix.split} ({matrix.task})", fontsize=11, x=0.02, ha="left")
    grid_ax.set_title(f"red box: trained on that language · transfer: mean over the others · {direction}",
                      fontsize=8, loc="left", color="#444444")
    bar = figure.colorbar(image, ax=[grid_ax, side_ax], fraction=0.04 if n_cols > 10 else 0.06, pad=0.02,
                          aspect=max(8, 4 * n_rows))
    bar.set_label(metric)
    bar.outline.set_visible(False)
    return _save(figure, out_png)


def _save(figure: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, facecolor="white")
    tmp.replace(out)
    return out


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def read_metrics(run_dir: str | Path) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, dict[str, float]]]]]:
    """(step, loss) pairs and, per language, (step, dev metrics) from a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log (is {run_dir} an xft run folder?)")
    losses: list[tuple[int, float]] = []
    evals: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for record in read_metrics_log(path):
        if "loss" in record:
            losses.append((int(record["step"]), float(record["loss"])))
        for language, metrics in (record.get("eval") or {}).items():
            evals.setdefault(language, []).append((int(record["step"]), metrics))
    return losses, evals


def training_curves(run_dir: str | Path, out_png: str | Path, *, metric: str | None = None) -> Path:
    """Loss over steps (raw and smoothed) beside the dev metric per language over steps (and their mean)."""
    from matplotlib import colormaps

    losses, evals = read_metrics(run_dir)
    if metric is None:
        first = next((m for series in evals.values() for _, m in series), {})
        metric = next(iter(first), "")
    languages = sorted(evals)
    many = len(languages) > 10
    figure = _figure(13.0 if many else 11.0, 4.4)
    loss_ax, eval_ax = figure.subplots(1, 2)

    if losses:
        steps, values = zip(*losses)
        window = max(1, len(values) // 20)
        loss_ax.plot(steps, values, color="#9ecae1" if window > 1 else "#08519c", linewidth=1 if window > 1 else 1.5,
                     label="loss")
        if window > 1:
            loss_ax.plot(steps, _smooth(values, window), color="#08519c", linewidth=2, label=f"mean of {window} steps")
            loss_ax.legend(fontsize=8)
    else:
        loss_ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=loss_ax.transAxes)
    loss_ax.set_title("training loss")
    loss_ax.set_xlabel("step")
    loss_ax.grid(alpha=0.3)

    colours = colormaps["tab20" if many else "tab10"]
    by_step: dict[int, list[float]] = {}
    for index, language in enumerate(languages):
        points = [(s, m[metric]) for s, m in evals[language] if metric in m]
        if not points:
            continue
        steps, values = zip(*points)
        for s, v in points:
            by_step.setdefault(s, []).append(v)
        eval_ax.plot(steps, values, marker="o", markersize=2 if many else 3, linewidth=0.9 if many else 1.4,
                     alpha=0.7 if many else 1.0, color=colours(index % colours.N), label=language)
    if by_step and len(languages) > 1:
        steps = sorted(by_step)
        eval_ax.plot(steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], color="black", linewidth=2.5, label="mean")
    if by_step:
        eval_ax.legend(fontsize=7 if many else 8, ncol=1 + len(languages) // 14, loc="center left", bbox_to_anchor=(1.01, 0.5),
                       frameon=False, title="language", title_fontsize=8)
    else:
        eval_ax.text(0.5, 0.5, "no dev evaluations logged", ha="center", va="center", transform=eval_ax.transAxes)
    eval_ax.set_title(f"dev {metric or 'metric'} per language")
    eval_ax.set_xlabel("step")
    eval_ax.grid(alpha=0.3)
    figure.suptitle(f"Training curves of run {Path(run_dir).name}", fontsize=11)
    return _save(figure, out_png)
