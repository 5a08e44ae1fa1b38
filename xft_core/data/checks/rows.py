"""Rows as the checks see them: which field holds what (from a task head's `RowFields`), in split order.

Fields come from the task head, never guessed from field names: `task_head` builds the head a config names,
`head_for_rows` picks the installed head whose `validate_row` accepts the data. A generation head's target
is checked as the second text of a row (like a classification head's pair): both are what the model sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from xft_core.data.checks.report import Finding
from xft_core.data.readers import UNLABELLED_SPLIT, DataError, DataSet, Split
from xft_core.hooks import RowFields

SPLIT_ORDER = ("train", "training", "validation", "valid", "dev", "test")
FIRST_ROWS = 5  # rows of every language and split that a task head must accept to be chosen for the data


# ----------------------------------------------------------------------------------------- task heads
def task_head(pm: Any, name: str, options: Mapping[str, Any] | None = None, *, config_key: str = "task") -> Any:
    """The installed task head `name`, built with `options` (a config's `task_options`)."""
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "task_heads", name, config_key=config_key)
    return spec.build(build_options(spec.options, options or {}, key="task_options"))


def head_for_rows(pm: Any, data: DataSet) -> tuple[str, Any]:
    """(name, head) of the installed task head whose `validate_row` accepts the first rows of every language and
    split and whose fields cover most of the rows' fields (a labelled head beats one that reads only the text;
    ties go to the first name); a DataError saying why each head refused them when none does."""
    from xft_core.hooks.manager import collect

    heads = collect(pm, "task_heads")
    labelled = [parts for split, parts in data.splits.items() if split != UNLABELLED_SPLIT] or list(data.splits.values())
    sample = [(row, where) for by_language in labelled for part in by_language.values()
              for row, where in zip(part.rows[:FIRST_ROWS], part.where)]
    refused, accepted = [], []
    keys = {key for row, _ in sample for key in row}
    for name in sorted(heads):
        try:
            head = task_head(pm, name)
        except (ValueError, TypeError) as exc:  # ConfigError included: a head that needs task_options
            refused.append(f"  {name}: needs task_options ({exc})")
            continue
        problem = next(((where, p) for row, where in sample if (p := head.validate_row(row))), None)
        if problem is None:
            covered = {getattr(head.fields, f) for f in ("text", "pair", "label", "tags", "target")} & keys
            accepted.append((-len(covered), name, head))
            continue
        (file, line), message = problem
        refused.append(f"  {name}: {file} line {line}: {message}")
    if accepted:
        _, name, head = min(accepted, key=lambda a: a[:2])
        return name, head
    available = ", ".join(sorted(heads)) or "(none installed)"
    raise DataError("No installed task head accepts these rows, so which field holds the text is unknown:\n"
                    + "\n".join(refused) + f"\nName the task with --task NAME (one of: {available}) or check a run config.")


def present(fields: RowFields, data: DataSet) -> RowFields:
    """`fields` without the optional ones that no row has (a classification head's pair field on single texts)."""
    rows = [row for by_language in data.splits.values() for part in by_language.values() for row in part.rows]
    absent = {name: None for name in ("pair", "label", "tags", "target")
              if getattr(fields, name) and not any(getattr(fields, name) in row for row in rows)}
    return replace(fields, **absent) if absent else fields


# ------------------------------------------------------------------------------------------- row values
def second_field(fields: RowFields) -> str | None:
    """The second text the model sees: a pair (NLI hypothesis) or a generation target."""
    return fields.pair or fields.target


def text_of(row: Mapping[str, Any], name: str | None) -> str:
    value = row.get(name, "") if name else ""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def input_key(row: Mapping[str, Any], fields: RowFields) -> str:
    """What the model sees (text and pair or target), the unit of exact duplication."""
    text = text_of(row, fields.text).strip()
    second = second_field(fields)
    return f"{text}\x1f{text_of(row, second).strip()}" if second else text


def label_of(row: Mapping[str, Any], fields: RowFields) -> Any:
    if fields.label:
        return row.get(fields.label)
    return tuple(row.get(fields.tags) or ()) if fields.tags else None


# ----------------------------------------------------------------------------------------- iteration
def ordered_splits(data: DataSet) -> list[str]:
    """train before dev before test, so a repeat is reported on the later split (the leak)."""
    return sorted(data.splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def languages(data: DataSet) -> list[str]:
    return sorted({language for by_language in data.splits.values() for language in by_language})


def rows_of(part: Split) -> Iterator[tuple[dict[str, Any], str, int]]:
    for row, (file, line) in zip(part.rows, part.where):
        yield row, file, line


def clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def finding(kind: str, part: Split, row: Mapping[str, Any], file: str, line: int, fields: RowFields, **kw: Any) -> Finding:
    return Finding(kind, part.language, part.split, file, line, clip(text_of(row, fields.text)), **kw)
