"""Wrong-language rows, found through the plugin hooks: `xft_language_scores` (a probability per language), or,
where no plugin gives scores, `xft_detect_language` (a code only).

With scores a row is in a wrong language when another language wins, the file's language (with its
macrolanguage relatives) gets less than 5% and the winner is at least 10 times likelier; otherwise it is a
close call (romanised Hindi: wrong; a line of product codes in English, where every language scores near
nothing: a close call). With codes only, every mismatch is a wrong language.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from xft_core.data.checks.report import Finding, PartSummary
from xft_core.data.checks.rows import finding, ordered_splits, rows_of, text_of
from xft_core.data.readers import DataSet
from xft_core.hooks import RowFields
from xft_core.util.languages import same_language

MIN_LANGID_CHARS = 20  # below this, language ID is a coin toss; such rows are counted, not judged
CLEARLY = 10  # a wrong language must be this many times likelier than the file's own
MAX_OWN_PROBABILITY = 0.05  # ... and the file's own language (with its relatives) less likely than this
PROBE = "Which languages does the detector know? It tells by the keys of its scores for this sentence."


class HookDetector:
    """Language ID through the plugin manager's hooks; `judge` answers (detected language, its probability,
    probability of the file's language and its relatives), the probabilities None with codes only."""

    def __init__(self, pm: Any):
        self.scores_hook = pm.hook.xft_language_scores
        self.code_hook = pm.hook.xft_detect_language
        self._related: dict[str, dict[str, bool]] = {}  # file language -> {detector key: same language?}
        self.has_scores = bool(self.scores_hook.get_hookimpls())
        self.name = ""  # which hook answers and which plugins implement it; empty when none does
        for hook, note in ((self.scores_hook, ""), (self.code_hook, ", codes only")):
            plugins = [pm.get_name(impl.plugin) or repr(impl.plugin) for impl in hook.get_hookimpls()]
            if plugins and not self.name:
                self.name = f"{hook.name} hook ({', '.join(plugins)}){note}"

    def scores(self, text: str) -> dict[str, float] | None:
        return self.scores_hook(text=text) if self.has_scores else None

    def knows(self, language: str, sample: str = "") -> bool:
        """Scores for a sample of the language name it (or a relative) among their keys; with codes only, the
        code hook confirms the sample among [language]."""
        scores = self.scores(sample or PROBE)
        if scores is not None:
            return any(self._relatives(language, scores).values())
        return self.code_hook(text=sample or language, candidates=[language]) is not None

    def _relatives(self, language: str, scores: Mapping[str, float]) -> dict[str, bool]:
        """{detector key: same language as `language`?}, remembered per language (every row asks)."""
        related = self._related.setdefault(language, {})
        for key in scores.keys() - related.keys():
            related[key] = same_language(language, key)
        return related

    def judge(self, text: str, language: str) -> tuple[str | None, float | None, float | None]:
        scores = self.scores(text)
        if scores is None:
            return self.code_hook(text=text, candidates=None), None, None
        if not scores:
            return None, None, None
        best = max(scores, key=scores.__getitem__)
        related = self._relatives(language, scores)
        expected = sum(p for key, p in scores.items() if related[key])
        return best, float(scores[best]), float(expected)


def language_detector(pm: Any) -> HookDetector | None:
    """A detector over `pm`'s language hooks, or None when no plugin answers them (or its backend is missing,
    as when the built-in xft_langid runs without py3langid)."""
    detector = HookDetector(pm)
    if not detector.name:
        return None
    try:
        detector.judge(PROBE, "en")
    except ImportError:
        return None
    return detector


def find_wrong_language(
    data: DataSet, fields: RowFields, detector: Any, summaries: Mapping[tuple[str, str], PartSummary]
) -> list[Finding]:
    found = []
    for split in ordered_splits(data):
        for language, part in sorted(data.splits[split].items()):
            summary = summaries[(language, split)]
            sample = next((t for t in (text_of(r, fields.text).strip() for r in part.rows) if len(t) >= MIN_LANGID_CHARS), "")
            if not detector.knows(language, sample):
                summary.langid = "not checkable"
                continue
            summary.langid = "checked"
            detected: Counter[str] = Counter()
            judged: dict[str, tuple[Any, Any, Any]] = {}  # repeated texts (NLI premises) are judged once
            for row, file, line in rows_of(part):
                text = text_of(row, fields.text).strip()
                if len(text) < MIN_LANGID_CHARS:
                    summary.langid_not_judged += int(bool(text))
                    continue
                if text not in judged:
                    judged[text] = detector.judge(text, language)
                label, probability, expected = judged[text]
                if label is None:  # the detector passed
                    summary.langid_not_judged += 1
                    continue
                detected[label] += 1
                if same_language(language, label):
                    continue
                clear = expected is None or (expected < MAX_OWN_PROBABILITY and probability >= CLEARLY * expected)
                detail = {"detected": label, "probability": probability, "expected_probability": expected}
                detail = {k: round(v, 4) if isinstance(v, float) else v for k, v in detail.items()}
                kind = "wrong_language" if clear else "ambiguous_language"
                found.append(finding(kind, part, row, file, line, fields, detail=detail))
            summary.langid_checked = sum(detected.values())
            summary.detected = dict(detected.most_common())
    return found

