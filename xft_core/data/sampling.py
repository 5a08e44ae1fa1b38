"""Which rows stand for a split when only N may be used (`xft eval --max-examples`, `data.max_eval_examples`,
`xft bench transfer --max-examples`): drawn across the file, reproducibly, stratified by label where there is one.

The first N rows are no sample: shipped files are often sorted by label (SIB-200's test split starts with 50 rows
of one topic). The draw is seeded by a key (the split's name), not by the language, so parallel files (the same
sentences in every language, the same line numbers) keep the same lines in every language; stratified draws do
too when the languages' labels agree line by line, as in parallel sets.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row")


def spread_sample(rows: Sequence[Row], limit: int, *, key: str, label: Callable[[Row], Any] | None = None) -> list[Row]:
    """`limit` of `rows` in file order, drawn at random (seeded by `key`); with `label`, each label keeps its share
    of the rows (largest remainder, every label at least one row while `limit` allows); labels that are not
    scalars (a tag sequence) are ignored. `limit` 0 or at least len(rows): all rows."""
    return [rows[i] for i in spread_indices(len(rows), limit, key=key,
                                            labels=[label(row) for row in rows] if label is not None else None)]


def spread_indices(n: int, limit: int, *, key: str, labels: Sequence[Any] | None = None) -> list[int]:
    """The sorted row numbers `spread_sample` keeps."""
    if not limit or limit >= n:
        return list(range(n))
    if labels is not None and not all(isinstance(value, (str, int, float, bool)) for value in labels):
        labels = None  # a tag sequence per row is no class to stratify by
    if labels is None:
        return sorted(random.Random(key).sample(range(n), limit))
    groups: dict[str, list[int]] = {}
    for index, value in enumerate(labels):
        groups.setdefault(_label_key(value), []).append(index)
    quotas = _quotas({name: len(members) for name, members in groups.items()}, limit)
    chosen: list[int] = []
    for name in sorted(groups):
        chosen += random.Random(f"{key}:{name}").sample(groups[name], quotas[name])
    return sorted(chosen)


def _quotas(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Rows per label: proportional to its size, rounded by largest remainder (ties by label name); every label at
    least one while there is room, none more than it has."""
    total = sum(sizes.values())
    names = sorted(sizes)
    floor = {name: min(sizes[name], max(1 if limit >= len(names) else 0, limit * sizes[name] // total)) for name in names}
    left = limit - sum(floor.values())
    by_remainder = sorted(names, key=lambda name: (-(limit * sizes[name] % total), name))
    while left > 0:
        grew = False
        for name in by_remainder:
            if left and floor[name] < sizes[name]:
                floor[name] += 1
                left -= 1
                grew = True
        if not grew:
            break
    while left < 0:  # the minimum of one per label overshot: take back from the largest shares
        name = max(names, key=lambda n: (floor[n], n))
        floor[name] -= 1
        left += 1
    return floor


def _label_key(value: Any) -> str:
    """A label as a group name: strings as they are, a number as its repr."""
    return value if isinstance(value, str) else repr(value)
