"""A transfer matrix as report files (JSON, CSV, Markdown; the heatmap from `plots`) and as a terminal table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from xft_core.evaluation.matrix import DEFINITIONS, TransferMatrix
from xft_core.evaluation.plots import fmt, transfer_heatmap, value_scale
from xft_core.evaluation.ranking import SOURCES, ranking_markdown, source_ranking
from xft_core.util.files import atomic_write_json, atomic_write_text

SUMMARY_COLUMNS = ("average", "in_language", "transfer", "transfer_gap", "vs_zero_shot")
HEADERS = {"average": "average", "in_language": "in-language", "transfer": "transfer", "transfer_gap": "transfer gap",
           "vs_zero_shot": "vs zero-shot"}


def write_reports(matrix: TransferMatrix, folder: str | Path, *, metric: str | None = None) -> dict[str, Path]:
    """report/transfer.json, .csv, .md and the heatmap .png (of `metric`, default the primary), and sources.json (the
    adapters ranked per language, ranking.py) where the matrix has one-package rows; returns the paths."""
    import csv
    import io


    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metric = metric or matrix.primary
    paths = {k: folder / f"transfer.{k}" for k in ("json", "csv", "md", "png")}
    atomic_write_json(paths["json"], matrix.to_dict())
    ranking = source_ranking(matrix, metric)
    if any(target["ranking"] for target in ranking["targets"].values()):
        paths["sources"] = folder / SOURCES
        atomic_write_json(paths["sources"], ranking)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "kind", "training_languages", "metric", *matrix.languages, *SUMMARY_COLUMNS])
    for name in matrix.metric_names:
        summary = matrix.summary(name)
        for row, values in zip(matrix.rows, matrix.values(name)):
            writer.writerow([row.label, row.kind, " ".join(row.sources), name,
                             *["" if v is None or math.isnan(v) else repr(v) for v in values],
                             *["" if summary[row.label][c] is None else repr(summary[row.label][c]) for c in SUMMARY_COLUMNS]])
    atomic_write_text(paths["csv"], buffer.getvalue())
    atomic_write_text(paths["md"], markdown(matrix, metric))
    transfer_heatmap(matrix, paths["png"], metric=metric)
    return paths


def markdown(matrix: TransferMatrix, metric: str | None = None) -> str:
    metric = metric or matrix.primary
    reference = matrix.reference()
    counts = ", ".join(f"{lang} {n}" for lang, n in matrix.examples.items())
    lines = [f"# Cross-lingual transfer: {matrix.task} on the {matrix.split} split", "",
             f"Base model: `{matrix.base_model}`. Examples per language: {counts}.", "",
             "Cells marked * are languages the row's adapter was trained on, † languages it saw a few labelled rows of "
             "(few-shot); **bold** is the best row of each column.", ""]
    for name in [metric] + [m for m in matrix.metric_names if m != metric]:
        lines += [f"## {name}{' (primary)' if name == metric else ''}", "", *_markdown_table(matrix, name), ""]
    lines += ranking_markdown(source_ranking(matrix, metric))
    lines += ["## How the summary columns are computed", ""]
    lines += [f"- **{HEADERS[k]}**: {v}." for k, v in DEFINITIONS.items()]
    lines.append(f"- reference row: "
                 f"{reference.label if reference else 'none (no row trained on exactly one language, no base row)'}.")
    if any(not matrix.greater_is_better.get(m, True) for m in matrix.metric_names):
        lines.append("- lower is better for: "
                     + ", ".join(m for m in matrix.metric_names if not matrix.greater_is_better.get(m, True)) + ".")
    if matrix.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in matrix.notes]]
    return "\n".join(lines) + "\n"


def _markdown_table(matrix: TransferMatrix, metric: str) -> list[str]:
    scale, summary, values = value_scale(matrix, metric), matrix.summary(metric), matrix.values(metric)
    higher = matrix.greater_is_better.get(metric, True)
    best = []
    for j in range(len(matrix.languages)):
        column = [v[j] for v in values if v[j] is not None and not math.isnan(v[j])]
        varies = len(set(column)) > 1
        best.append((max if higher else min)(column) if varies else None)
    header = ["adapter \\ language", *matrix.languages, *[HEADERS[c] for c in SUMMARY_COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row, row_values in zip(matrix.rows, values):
        cells = []
        for language, value, top in zip(matrix.languages, row_values, best):
            text = fmt(value, scale) + ("*" if language in row.sources and row.kind == "adapter" else "")
            text += "†" if language in row.few_shot else ""
            cells.append(f"**{text}**" if value is not None and value == top and len(matrix.rows) > 1 else text)
        cells += [fmt(summary[row.label][c], scale) for c in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join([row.label.replace("|", "\\|"), *cells]) + " |")
    return lines


def print_table(matrix: TransferMatrix, console: Any = None, *, metric: str | None = None) -> None:
    """Rows x languages of one metric with the summary columns; languages become rows when it would not fit."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    metric = metric or matrix.primary
    scale, summary, values = value_scale(matrix, metric), matrix.summary(metric), matrix.values(metric)
    title = f"{metric} on {matrix.split} ({matrix.task})"
    shown = ("average", "transfer", "transfer_gap", "vs_zero_shot")
    label_width = max(len(r.label) for r in matrix.rows) + 4
    if label_width + 9 * len(matrix.languages) + 14 * len(shown) <= console.width:
        table = Table(title=title, caption="underlined: the row's training languages")
        table.add_column("adapter \\ language")
        for column in [*matrix.languages, *shown]:
            table.add_column(HEADERS.get(column, column), justify="right", style="bold" if column == "average" else None)
        for row, row_values in zip(matrix.rows, values):
            cells = [_styled(v, scale, lang in row.sources and row.kind == "adapter")
                     for lang, v in zip(matrix.languages, row_values)]
            table.add_row(row.label, *cells, *[fmt(summary[row.label][c], scale) for c in shown])
    else:  # many languages: one line per language, one column per adapter
        table = Table(title=title + " (languages as rows)", caption="underlined: the row's training languages")
        table.add_column("language")
        for row in matrix.rows:
            table.add_column(row.label, justify="right")
        for j, language in enumerate(matrix.languages):
            table.add_row(language, *[_styled(values[i][j], scale, language in r.sources and r.kind == "adapter")
                                      for i, r in enumerate(matrix.rows)])
        table.add_section()
        for c in shown:
            table.add_row(HEADERS[c], *[fmt(summary[r.label][c], scale) for r in matrix.rows], style="bold")
    console.print(table)
    for note in matrix.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def _styled(value: float | None, scale: float, own: bool) -> str:
    text = fmt(value, scale)
    return f"[underline]{text}[/]" if own else text
