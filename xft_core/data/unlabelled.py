"""Text without labels for the target languages: calibration, self-training and language adapters learn from it.

It comes from `<lang>.unlabelled.{jsonl,txt}` files (the split `data.unlabelled_split`) and from the texts of the
splits listed in `data.unlabelled_from`, their labels dropped. Only what the model reads is kept (the head's text
and pair fields). No recipe may learn from evaluation text: a row whose input repeats an evaluation row (any
language's test split, the dev split of the languages evaluated during training) is dropped with a DataWarning
naming its file and line and the row it repeats; repeats within the unlabelled text are dropped too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from xft_core.data.checks.rows import input_key
from xft_core.data.readers import DataSet, Split, warn

if TYPE_CHECKING:
    from xft_core.config import DataConfig


def evaluation_keys(data: DataSet, d: DataConfig, head: Any, evaluated: Iterable[str]) -> dict[str, tuple[str, int]]:
    """The input of every evaluation row -> (file, line): the test split of every language, and the dev split of the
    `evaluated` languages (unless the dev split is itself read as unlabelled text)."""
    keys: dict[str, tuple[str, int]] = {}
    parts = list(data.splits.get(d.test_split, {}).values())
    if d.dev_split not in d.unlabelled_from:
        parts += [p for lang, p in data.splits.get(d.dev_split, {}).items() if lang in set(evaluated)]
    for part in parts:
        for row, where in zip(part.rows, part.where):
            keys.setdefault(input_key(row, head.fields), where)
    return keys


def input_only(row: Mapping[str, Any], head: Any) -> dict[str, Any]:
    """What the head reads of a row, nothing else (no label, no tags): a plain-text line becomes the head's input
    row (`head.input_row`: words for a tagger)."""
    fields = head.fields
    if fields.text not in row and "text" in row:
        return head.input_row(str(row["text"]))
    return {k: row[k] for k in (fields.text, fields.pair) if k and k in row}


def unlabelled_rows(data: DataSet, d: DataConfig, head: Any, languages: Iterable[str] | None = None, *,
                    evaluated: Iterable[str] = (), limit: int = 0) -> dict[str, Split]:
    """Per language (those given, else every language with unlabelled text): its unlabelled rows as `Split`s of
    the unlabelled split, inputs only, without repeats and without evaluation rows; `limit` > 0 keeps the first
    `limit` of each language. Languages with none are left out."""
    sources = [d.unlabelled_split, *[s for s in d.unlabelled_from if s != d.unlabelled_split]]
    wanted = list(languages) if languages is not None else sorted({lang for s in sources for lang in data.languages(s)})
    banned = evaluation_keys(data, d, head, evaluated)
    out: dict[str, Split] = {}
    for language in wanted:
        part = Split(language, d.unlabelled_split)
        seen: set[str] = set()
        dropped: list[tuple[tuple[str, int], tuple[str, int]]] = []
        for split in sources:
            found = data.get(split, language)
            for row, where in zip(found.rows, found.where) if found else ():
                clean = input_only(row, head)
                key = input_key(clean, head.fields)
                if not key.strip("\x1f ") or key in seen:
                    continue
                if key in banned:
                    dropped.append((where, banned[key]))
                    continue
                seen.add(key)
                part.rows.append(clean)
                part.where.append(where)
        if dropped:
            (file, line), (other, other_line) = dropped[0]
            warn(f"{language}: {len(dropped)} unlabelled row(s) repeat an evaluation row and are dropped, so that nothing "
                 f"is learnt from evaluation text (first: {file} line {line}, repeating {other} line {other_line})")
        if limit and len(part) > limit:
            part = Split(language, part.split, part.rows[:limit], part.where[:limit])
        if part.rows:
            out[language] = part
    return out
