"""Exact checks: empty rows, repeats within and across the splits of a language, one text with two labels,
the same text under two languages, and whether the data is parallel (line i translated in every language).

Duplicates are only looked for within one language: in parallel sets (SIB-200, XNLI) line i is a translation
in every language, so a repeat across languages is only a finding when the data is not parallel.
"""

from __future__ import annotations

from typing import Any

from xft_core.data.checks.report import Finding
from xft_core.data.checks.rows import finding, input_key, label_of, languages, ordered_splits, rows_of, second_field, text_of
from xft_core.data.readers import UNLABELLED_SPLIT, DataSet
from xft_core.hooks import RowFields

EVALUATION_SPLITS = ("dev", "validation", "valid", "test")
MIN_CROSS_LANGUAGE_CHARS = 20  # names and numbers legitimately repeat across languages


def is_parallel(data: DataSet, fields: RowFields, agreement: float = 0.9) -> bool:
    """Every split holds the same number of rows in every language and (with labels) the same label on at
    least 90% of lines: line i is one item translated, so a few bad lines do not hide the layout."""
    for by_language in data.splits.values():
        parts = list(by_language.values())
        if len(parts) < 2:
            continue
        if len({len(p) for p in parts}) > 1:
            return False
        if fields.label:
            first = [r.get(fields.label) for r in parts[0].rows]
            for part in parts[1:]:
                same = sum(a == r.get(fields.label) for a, r in zip(first, part.rows))
                if same < agreement * len(first):
                    return False
    return len(languages(data)) > 1


def find_empty(data: DataSet, fields: RowFields) -> list[Finding]:
    found = []
    names = (fields.text, second_field(fields))
    for split in ordered_splits(data):
        for part in data.splits[split].values():
            for row, file, line in rows_of(part):
                empty = [name for name in names if name and name in row and not text_of(row, name).strip()]
                if not text_of(row, fields.text).strip() and fields.text not in empty:
                    empty.insert(0, fields.text)  # missing altogether
                if empty:
                    found.append(finding("empty", part, row, file, line, fields, detail={"fields": empty}))
    return found


def find_duplicates(data: DataSet, fields: RowFields) -> list[Finding]:
    """Exact repeats within a split and across the splits of one language, and repeats with another label."""
    found = []
    for language in languages(data):
        earlier: dict[str, tuple[dict[str, Any], Any]] = {}  # key -> (where, label) from earlier splits
        evaluated: dict[str, dict[str, Any]] = {}  # key -> where, of rows of evaluation splits
        for split in ordered_splits(data):
            part = data.get(split, language)
            if part is None:
                continue
            here: dict[str, tuple[dict[str, Any], Any]] = {}
            for row, file, line in rows_of(part):
                key = input_key(row, fields)
                if not key.strip("\x1f "):
                    continue
                first = here.get(key) or earlier.get(key)
                if first is None:
                    here[key] = ({"language": language, "split": split, "file": file, "line": line}, label_of(row, fields))
                    continue
                where, label = first
                kind = "duplicate" if key in here else "duplicate_across_splits"
                if split == UNLABELLED_SPLIT and kind != "duplicate":
                    if key not in evaluated:
                        continue  # text also in a labelled training row: nothing leaks
                    kind, where = "unlabelled_in_evaluation", evaluated[key]
                found.append(finding(kind, part, row, file, line, fields, other=where))
                if label != label_of(row, fields) and split != UNLABELLED_SPLIT:
                    detail = {"label": label_of(row, fields), "other_label": label}
                    found.append(finding("conflicting_labels", part, row, file, line, fields, other=where, detail=detail))
            for key, value in here.items():
                earlier.setdefault(key, value)
            if split in EVALUATION_SPLITS:
                for row, file, line in rows_of(part):
                    evaluated.setdefault(input_key(row, fields), {"language": language, "split": split, "file": file,
                                                                  "line": line})
    return found


def find_cross_language_duplicates(data: DataSet, fields: RowFields) -> list[Finding]:
    """The same text under two languages: in non-parallel data, a row filed under the wrong language."""
    found: list[Finding] = []
    first: dict[str, dict[str, Any]] = {}  # input key -> where it was first seen
    for language in languages(data):
        for split in ordered_splits(data):
            part = data.get(split, language)
            for row, file, line in rows_of(part) if part else ():
                key = input_key(row, fields)
                if len(key) < MIN_CROSS_LANGUAGE_CHARS:
                    continue
                where = first.setdefault(key, {"language": language, "split": split, "file": file, "line": line})
                if where["language"] != language:
                    found.append(finding("cross_language_duplicate", part, row, file, line, fields, other=where))
    return found
