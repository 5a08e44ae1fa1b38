"""Over-long rows: more tokens than `max_length`, counted with the model's tokenizer the way the head encodes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xft_core.data.checks.report import Finding
from xft_core.data.checks.rows import finding, ordered_splits, rows_of, second_field, text_of
from xft_core.data.readers import DataSet
from xft_core.hooks import RowFields


def token_lengths(rows: Sequence[Mapping[str, Any]], fields: RowFields, tokenizer: Any, batch: int = 512) -> list[int]:
    """Token counts as the head would encode them (special tokens included, pairs encoded together)."""
    lengths: list[int] = []
    second = second_field(fields)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        if fields.text and chunk and isinstance(chunk[0].get(fields.text), list):
            words = [[str(t) for t in r.get(fields.text) or []] for r in chunk]
            encoded = tokenizer(words, is_split_into_words=True, truncation=False)
        elif second:
            pairs = [text_of(r, second) for r in chunk]
            encoded = tokenizer([text_of(r, fields.text) for r in chunk], pairs, truncation=False)
        else:
            encoded = tokenizer([text_of(r, fields.text) for r in chunk], truncation=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def find_over_length(data: DataSet, fields: RowFields, tokenizer: Any, max_length: int, limit: int = 0) -> list[Finding]:
    """Rows over `max_length` tokens; with `limit`, only the first `limit` rows of each part are tokenized."""
    found = []
    for split in ordered_splits(data):
        for part in data.splits[split].values():
            rows = part.rows[:limit] if limit else part.rows
            for (row, file, line), n in zip(rows_of(part), token_lengths(rows, fields, tokenizer)):
                if n > max_length:
                    detail = {"tokens": n, "max_length": max_length}
                    found.append(finding("over_length", part, row, file, line, fields, detail=detail))
    return found
