"""What a data check finds and counts: one `Finding` per problem row, one `PartSummary` per language and split."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from xft_core.data.readers import Split
from xft_core.hooks import RowFields

KINDS = {  # kind -> what it means, in report order
    "empty": "empty text",
    "duplicate": "exact duplicate of an earlier row of the same split",
    "duplicate_across_splits": "exact duplicate of a row of an earlier split (leak)",
    "conflicting_labels": "same text as an earlier row, different label",
    "near_duplicate": "near duplicate of an earlier row of the same split",
    "near_duplicate_across_splits": "near duplicate of a row of an earlier split (leak)",
    "cross_language_duplicate": "same text in another language's file (non-parallel data only)",
    "unlabelled_in_evaluation": "unlabelled text that repeats an evaluation row (dropped before any recipe learns from it)",
    "wrong_language": "language ID: another language, 10 times likelier; the file's own under 5%",
    "ambiguous_language": "close call: language ID prefers another language, but not clearly",
    "over_length": "longer than max_length tokens (will be truncated)",
}


@dataclass
class Finding:
    kind: str  # one of KINDS
    language: str
    split: str
    file: str
    line: int
    text: str  # the row's text, clipped
    other: dict[str, Any] | None = None  # {"language", "split", "file", "line"} of the row repeated
    detail: dict[str, Any] = field(default_factory=dict)  # similarity, detected language, tokens, labels

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}"


@dataclass
class PartSummary:
    """Counts for one language in one split."""

    language: str
    split: str
    files: list[str]
    rows: int
    labels: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    langid: str = "off"  # "checked", "not checkable" or "off"
    langid_checked: int = 0
    langid_not_judged: int = 0  # shorter than MIN_LANGID_CHARS, or the detector passed
    detected: dict[str, int] = field(default_factory=dict)  # detector label -> rows

    @property
    def imbalance(self) -> float | None:
        """Most over least frequent label (None without labels)."""
        counts = [c for c in self.labels.values() if c]
        return max(counts) / min(counts) if len(counts) > 1 else None


def summarise(part: Split, fields: RowFields) -> PartSummary:
    labels = Counter(str(r[fields.label]) for r in part.rows if r.get(fields.label) is not None) if fields.label else Counter()
    tags = Counter(str(t) for r in part.rows for t in (r.get(fields.tags) or ())) if fields.tags else Counter()
    files = sorted({file for file, _ in part.where})
    return PartSummary(part.language, part.split, files, len(part), dict(sorted(labels.items())), dict(sorted(tags.items())))


@dataclass
class Report:
    parts: list[PartSummary]
    findings: list[Finding]
    fields: RowFields
    parallel: bool
    near_threshold: float | None = None
    detector: str | None = None
    max_length: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def count(self, kind: str, language: str | None = None, split: str | None = None) -> int:
        return sum(1 for f in self.findings if f.kind == kind and language in (None, f.language) and split in (None, f.split))

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        by_part = Counter((f.kind, f.language, f.split) for f in self.findings)
        parts = []
        for p in self.parts:
            item = asdict(p) | {"imbalance": p.imbalance}
            item["issues"] = {kind: by_part[(kind, p.language, p.split)] for kind in KINDS}
            if p.langid == "checked":
                item["wrong_language_rate"] = round(item["issues"]["wrong_language"] / max(p.langid_checked, 1), 4)
            parts.append(item)
        return {
            "fields": asdict(self.fields),
            "parallel": self.parallel,
            "near_threshold": self.near_threshold,
            "language_id": self.detector,
            "max_length": self.max_length,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "totals": {"rows": sum(p.rows for p in self.parts)} | {kind: self.count(kind) for kind in KINDS},
            "kinds": KINDS,
            "parts": parts,
            "findings": [asdict(f) for f in self.findings],
        }
