"""Data checks: counts, label balance, duplicates, near duplicates, wrong-language, empty and over-long rows.

`check` runs everything over a `DataSet` and returns a `Report` (`xft data check` renders it);
`quick_check` is the cheap part that `xft train` runs first and turns into warnings. Every finding names
the file and line of the row, and for a repeat the file and line of the row it repeats.

The modules follow the data: `rows` (which field holds what, from the task head), `exact` (empty rows,
duplicates, parallel data), `near` (near duplicates), `langid` (wrong-language rows, through the plugin
hooks), `lengths` (over-long rows), `report` (what is found and counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from xft_core.data.checks.exact import find_cross_language_duplicates, find_duplicates, find_empty, is_parallel
from xft_core.data.checks.langid import CLEARLY, MIN_LANGID_CHARS, HookDetector, find_wrong_language, language_detector
from xft_core.data.checks.lengths import find_over_length, token_lengths
from xft_core.data.checks.near import find_near_duplicates, normalise, similarity
from xft_core.data.checks.report import KINDS, Finding, PartSummary, Report, summarise
from xft_core.data.checks.rows import head_for_rows, ordered_splits, present, task_head
from xft_core.data.checks.rows import languages as languages_in
from xft_core.data.readers import DataError, DataSet
from xft_core.hooks import RowFields
from xft_core.util.languages import normalize

__all__ = [
    "CLEARLY", "KINDS", "MIN_LANGID_CHARS", "QUICK_TOKEN_LIMIT", "Finding", "HookDetector", "PartSummary", "Report",
    "check", "head_for_rows", "language_detector", "normalise", "quick_check", "similarity", "subset", "task_head",
    "token_lengths",
]

QUICK_TOKEN_LIMIT = 2000  # rows per language and split that `quick_check` tokenizes (tokenizing is its cost)


def subset(data: DataSet, splits: Iterable[str] | None = None, languages: Iterable[str] | None = None) -> DataSet:
    """Only the named splits and languages (languages matched in any ISO 639 form: 'en' finds 'eng')."""
    splits, wanted = list(splits or ()), list(languages or ())
    unknown = [s for s in splits if s not in data.splits]
    if unknown:
        raise DataError(f"No split {', '.join(map(repr, unknown))} in the data. Splits: {', '.join(ordered_splits(data))}")
    present_languages = languages_in(data)
    missing = [lang for lang in wanted if not any(normalize(lang) == normalize(p) for p in present_languages)]
    if missing:
        raise DataError(f"No data for language(s) {', '.join(missing)}. Languages: {', '.join(present_languages)}")
    out = DataSet()
    for split in splits or data.splits:
        for language, part in data.splits[split].items():
            if not wanted or any(normalize(lang) == normalize(language) for lang in wanted):
                out.splits.setdefault(split, {})[language] = part
    return out


def check(
    data: DataSet,
    *,
    fields: RowFields | None = None,
    pm: Any = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    near_threshold: float | None = 0.9,
    detector: Any = "default",
    token_limit: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Every check over `data`. `fields` default to those of the first installed task head that accepts the rows;
    `detector="default"` asks the language hooks of `pm` (default: the process-wide plugin manager), None skips
    language ID; `near_threshold=None` skips near duplicates; `token_limit` > 0 tokenizes only that many rows of
    each language and split."""

    def plugins() -> Any:
        from xft_core.hooks.manager import get_plugin_manager

        return pm if pm is not None else get_plugin_manager()

    fields = present(fields or head_for_rows(plugins(), data)[1].fields, data)
    if isinstance(detector, str) and detector == "default":
        detector = language_detector(plugins())
    parts = [data.splits[s][lang] for s in ordered_splits(data) for lang in sorted(data.splits[s])]
    summaries = {(p.language, p.split): summarise(p, fields) for p in parts}
    parallel = is_parallel(data, fields)
    steps: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("empty", lambda: find_empty(data, fields)),
        ("duplicates", lambda: find_duplicates(data, fields)),
    ]
    if not parallel:
        steps.append(("cross-language duplicates", lambda: find_cross_language_duplicates(data, fields)))
    if near_threshold is not None:
        steps.append(("near duplicates", lambda: find_near_duplicates(data, fields, near_threshold)))
    if detector is not None:
        steps.append(("language ID", lambda: find_wrong_language(data, fields, detector, summaries)))
    if tokenizer is not None and max_length:
        steps.append(("token lengths", lambda: find_over_length(data, fields, tokenizer, max_length, token_limit)))
    findings: list[Finding] = []
    seconds: dict[str, float] = {}
    for name, step in steps:
        if progress:
            progress(name)
        started = time.perf_counter()
        findings.extend(step())
        seconds[name] = time.perf_counter() - started
    return Report(
        parts=list(summaries.values()),
        findings=findings,
        fields=fields,
        parallel=parallel,
        near_threshold=near_threshold,
        detector=getattr(detector, "name", None),
        max_length=max_length if tokenizer is not None else None,
        seconds=seconds,
    )


def quick_check(train: Mapping[str, Any], dev: Mapping[str, Any], head: Any, tokenizer: Any, max_length: int) -> list[str]:
    """Warnings worth a look before training: empty rows, duplicates within and across splits, the same text
    with two labels, over-long rows, imbalance. No near duplicates or language ID (`xft data check` has them)."""
    data = DataSet()
    for parts in (train, dev):
        for language, part in parts.items():
            data.splits.setdefault(part.split, {})[language] = part
    if not data.splits:
        return []
    report = check(data, fields=head.fields, tokenizer=tokenizer, max_length=max_length, near_threshold=None, detector=None,
                   token_limit=QUICK_TOKEN_LIMIT)
    warnings: list[str] = []
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in report.findings:
        groups.setdefault((finding.language, finding.kind, finding.split), []).append(finding)
    order = list(KINDS)
    for (language, kind, split), found in sorted(groups.items(), key=lambda g: (g[0][0], order.index(g[0][1]), g[0][2])):
        first = found[0]
        size = len(data.get(split, language) or ())
        if kind == "over_length":
            of = f"{size}" if size <= QUICK_TOKEN_LIMIT else f"the first {QUICK_TOKEN_LIMIT}"
            warnings.append(
                f"{language}: {len(found)} of {of} {split} texts are longer than max_length={max_length} tokens and will be "
                f"truncated (first: {first.where}, {first.detail['tokens']} tokens)"
            )
            continue
        also = f" (first: {first.where}"
        also += f", repeating {first.other['file']} line {first.other['line']})" if first.other else ")"
        warnings.append(f"{language}: {len(found)} {split} row(s): {KINDS[kind]}{also}")
    for part in report.parts:
        if part.split in {p.split for p in train.values()} and part.imbalance and part.imbalance > 10:
            warnings.append(f"{part.language}: labels are imbalanced more than 10:1 in {part.split} ({part.labels})")
    return warnings
