"""Pseudo-labels for self-training: which of the teacher's answers on unlabelled rows are kept.

Classification (one label per row): a row is kept when the probability of its predicted label reaches the
threshold; per language, the kept rows are balanced over the predicted classes (each class gets as many rows as
the rarest one, its most confident first) and capped per class. Balancing matters: an adapter that drifts toward
one label in a language would otherwise teach itself that drift.

Tagging (one tag per word): each word keeps its predicted tag when the tag's probability reaches the threshold,
else its tag is null (not trained on); sentences with no kept word are dropped, the rest ranked by their share of
kept words and capped per language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Kept:
    """The pseudo-labelled rows of one language and what was decided."""

    rows: list[dict[str, Any]]
    read: int  # unlabelled rows the teacher answered
    confident: int  # rows (tagging: sentences with a kept word) at or above the threshold
    per_class: dict[str, int] = field(default_factory=dict)  # kept rows per class (classification)
    words: tuple[int, int] = (0, 0)  # (kept words, words) of the kept sentences (tagging)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unlabelled_rows": self.read, "confident": self.confident, "kept": len(self.rows)}
        if self.per_class:
            out["per_class"] = self.per_class
        if self.words[1]:
            out["kept_words"], out["words"] = self.words
        return out


def select_labels(rows: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], *, label_field: str,
                  threshold: float, per_class: int = 0, balance: bool = True) -> Kept:
    """Confident rows, balanced over classes: each row with its predicted label (and its confidence)."""
    by_class: dict[str, list[tuple[float, int]]] = {}
    for index, prediction in enumerate(predictions):
        label = str(prediction["label"])
        confidence = float(prediction["scores"][label])
        if confidence >= threshold:
            by_class.setdefault(label, []).append((confidence, index))
    confident = sum(len(v) for v in by_class.values())
    quota = min((len(v) for v in by_class.values()), default=0) if balance else None
    if per_class:
        quota = min(quota, per_class) if quota is not None else per_class
    chosen: list[tuple[int, str, float]] = []
    counts: dict[str, int] = {}
    for label in sorted(by_class):
        ranked = sorted(by_class[label], key=lambda item: (-item[0], item[1]))  # most confident first, then file order
        taken = ranked if quota is None else ranked[:quota]
        counts[label] = len(taken)
        chosen += [(index, label, confidence) for confidence, index in taken]
    kept = [{**rows[index], label_field: label, "confidence": round(confidence, 4)}
            for index, label, confidence in sorted(chosen)]
    return Kept(kept, len(rows), confident, counts)


def select_tags(rows: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], *, tokens_field: str,
                tags_field: str, threshold: float, max_rows: int = 0) -> Kept:
    """Sentences with their confident tags (null where a word's tag is not confident)."""
    scored: list[tuple[float, float, int, list[str | None]]] = []
    for index, prediction in enumerate(predictions):
        tags, confidence = list(prediction["tags"]), list(prediction.get("confidence") or [])
        if len(confidence) != len(tags):
            raise ValueError("self-training a tagger needs a confidence per word in its predictions ('confidence')")
        kept = [tag if c >= threshold else None for tag, c in zip(tags, confidence)]
        share = sum(t is not None for t in kept) / max(len(kept), 1)
        if share > 0:
            scored.append((share, sum(confidence) / len(confidence), index, kept))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
    chosen = scored[:max_rows] if max_rows else scored
    chosen.sort(key=lambda item: item[2])
    out = [{tokens_field: list(rows[index][tokens_field]), tags_field: kept} for _, _, index, kept in chosen]
    words = sum(len(k) for *_, k in chosen)
    return Kept(out, len(rows), len(scored), {}, (sum(t is not None for *_, k in chosen for t in k), words))
