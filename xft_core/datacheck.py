"""Data checks: counts, balance, duplicates, wrong-language rows, empty and over-long texts.

`quick_check` is the cheap part that `xft train` runs first and turns into warnings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping


def _text_of(row: Mapping[str, Any], head: Any) -> str:
    fields = getattr(head, "options", None)
    name = getattr(fields, "text_field", None) or getattr(fields, "source_field", None) or "text"
    value = row.get(name, "")
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def quick_check(train: Mapping[str, Any], dev: Mapping[str, Any], head: Any, tokenizer: Any, max_length: int) -> list[str]:
    """Warnings worth a look before training: duplicates within and across splits, over-long rows, imbalance."""
    warnings: list[str] = []
    for language, part in train.items():
        texts = [_text_of(r, head) for r in part.rows]
        duplicates = sum(c - 1 for c in Counter(texts).values() if c > 1)
        if duplicates:
            warnings.append(f"{language}: {duplicates} exact duplicate text(s) in the training split")
        if language in dev:
            overlap = set(texts) & {_text_of(r, head) for r in dev[language].rows}
            if overlap:
                warnings.append(f"{language}: {len(overlap)} training text(s) also in the dev split (leak)")
        lengths = [len(ids) for ids in tokenizer(texts[:2000], truncation=False)["input_ids"]] if texts else []
        over = sum(n > max_length for n in lengths)
        if over:
            warnings.append(f"{language}: {over} of {len(lengths)} training texts are longer than max_length={max_length} tokens and will be truncated")
        label_field = getattr(getattr(head, "options", None), "label_field", None)
        if label_field:
            counts = Counter(str(r.get(label_field)) for r in part.rows if isinstance(r.get(label_field), (str, int)))
            if counts and min(counts.values()) * 10 < max(counts.values()):
                warnings.append(f"{language}: labels are imbalanced more than 10:1 ({dict(counts)})")
    return warnings
