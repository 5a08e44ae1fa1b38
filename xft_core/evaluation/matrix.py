"""Cross-lingual transfer matrix: every trained adapter (rows) on every evaluation language (columns).

The base model is loaded once; each adapter package is attached onto it, and every cell holds all of the
task head's metrics, computed by `xft_core.training.engine.score` from `head.predict`. Only the task-head protocol
is used, so the matrix works for every head. Reports (JSON, CSV, Markdown, heatmap PNG) and a terminal
table are written from the finished matrix; `xft eval` is the command line for all of it.

Derived numbers, per row and metric (the row's *training languages* come from its manifests):

- average: mean over every evaluated language;
- in-language: mean over the row's training languages;
- transfer: mean over the languages the row was not trained on (zero-shot transfer);
- transfer gap: in-language minus transfer (for an adapter trained on language s: score on s minus the
  mean on the others);
- vs zero-shot: the row's mean minus the *reference row's* mean, both over the languages the reference
  did not train on. The reference is the first row trained on exactly one language (else the base row),
  so for the per-language row this reads "what each language's own adapter gains over zero-shot
  transfer from the source language" (or over the untuned base).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, Sequence

BASE_LABEL = "base (no adapter)"
PER_LANGUAGE_LABEL = "per-language"
DEFINITIONS = {
    "average": "mean over every evaluated language",
    "in_language": "mean over the row's training languages",
    "transfer": "mean over the languages the row was not trained on (zero-shot transfer)",
    "transfer_gap": "in-language minus transfer",
    "vs_zero_shot": "row mean minus the reference row's mean, over the languages the reference was not trained on "
                    "(reference: the first row trained on one language, else the base row)",
}


# ------------------------------------------------------------------------------------------------ matrix
@dataclass
class MatrixRow:
    label: str
    kind: Literal["base", "adapter", "per-language"]
    sources: list[str]  # training languages (empty for the base row)
    adapters: dict[str, str] = field(default_factory=dict)  # "adapter": {"*": folder}; per-language: {language: folder}
    run: str = ""
    cells: dict[str, dict[str, float]] = field(default_factory=dict)  # language -> metric -> value
    few_shot: dict[str, int] = field(default_factory=dict)  # target language -> labelled rows it trained on


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass
class TransferMatrix:
    languages: list[str]
    rows: list[MatrixRow]
    metric_names: list[str]  # the head's metrics; the first is primary
    split: str = "test"
    task: str = ""
    base_model: str = ""
    examples: dict[str, int] = field(default_factory=dict)  # evaluated rows per language
    greater_is_better: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return self.metric_names[0]

    def row(self, label: str) -> MatrixRow:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row '{label}'; rows: {', '.join(r.label for r in self.rows)}")

    def value(self, label: str, language: str, metric: str | None = None) -> float | None:
        return self.row(label).cells.get(language, {}).get(metric or self.primary)

    def values(self, metric: str | None = None) -> list[list[float | None]]:
        """rows x languages of one metric (None where a row has no value for a language)."""
        m = metric or self.primary
        return [[row.cells.get(lang, {}).get(m) for lang in self.languages] for row in self.rows]

    def reference(self) -> MatrixRow | None:
        """The zero-shot reference: the first adapter row trained on exactly one language, else the base row."""
        single = next((r for r in self.rows if r.kind == "adapter" and len(r.sources) == 1), None)
        return single or next((r for r in self.rows if r.kind == "base"), None)

    def summary(self, metric: str | None = None) -> dict[str, dict[str, float | None]]:
        """Per row label: average, in_language, transfer, transfer_gap, vs_zero_shot (see the module docstring)."""
        m = metric or self.primary
        reference = self.reference()
        unseen_by_reference = [lang for lang in self.languages if reference and lang not in reference.sources]
        out = {}
        for row in self.rows:
            have = {lang: row.cells[lang][m] for lang in self.languages if m in row.cells.get(lang, {})}
            in_language = _mean([v for lang, v in have.items() if lang in row.sources])
            transfer = _mean([v for lang, v in have.items() if lang not in row.sources])
            vs = None
            if reference is not None and row is not reference:
                shared = [lang for lang in unseen_by_reference if lang in have and m in reference.cells.get(lang, {})]
                if shared:
                    vs = _diff(_mean([have[lang] for lang in shared]), _mean([reference.cells[lang][m] for lang in shared]))
            out[row.label] = {"average": _mean(list(have.values())), "in_language": in_language, "transfer": transfer,
                              "transfer_gap": _diff(in_language, transfer), "vs_zero_shot": vs}
        return out

    def to_dict(self) -> dict[str, Any]:
        reference = self.reference()
        return {
            "task": self.task, "base_model": self.base_model, "split": self.split, "languages": self.languages,
            "metrics": self.metric_names, "primary": self.primary, "examples": self.examples,
            "greater_is_better": self.greater_is_better, "reference_row": reference.label if reference else None,
            "rows": [_clean(asdict(r)) for r in self.rows],
            "summary": {m: _clean(self.summary(m)) for m in self.metric_names},
            "definitions": DEFINITIONS, "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TransferMatrix":
        rows = [MatrixRow(**{k: r[k] for k in ("label", "kind", "sources", "adapters", "run", "cells")},
                          few_shot=dict(r.get("few_shot", {}))) for r in data["rows"]]
        for row in rows:  # JSON has no NaN: a metric that could not be computed comes back as None
            row.cells = {lang: {m: (float("nan") if v is None else v) for m, v in c.items()} for lang, c in row.cells.items()}
        return cls(list(data["languages"]), rows, list(data["metrics"]), data.get("split", ""), data.get("task", ""),
                   data.get("base_model", ""), dict(data.get("examples", {})), dict(data.get("greater_is_better", {})),
                   list(data.get("notes", [])))


def _clean(value: Any) -> Any:
    """NaN -> None, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
