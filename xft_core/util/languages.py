"""Language codes in one scheme, for everything that compares or names languages (data checks, language ID, prompts).

Data sets spell languages in every ISO 639 form: `en` (639-1), `eng` (639-3), `ger` (639-2/B), `eng_Latn`
(FLORES), `en-US` (BCP 47). `langcodes` knows them all; the macrolanguage membership it does not expose
(Wu and Cantonese are Chinese, Indonesian is Malay, Croatian and Serbian are Serbo-Croatian, Nynorsk is
Norwegian) comes from the IANA subtag registry that its data package `language_data` ships. Between the two,
no table of codes is kept here.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache


@lru_cache(maxsize=4096)
def normalize(code: str) -> str:
    """One code per language: ISO 639-1 where one exists, else 639-3. 'eng', 'en', 'en-US' and 'eng_Latn' all
    give 'en'; the dominant member of a macrolanguage gives the macrolanguage ('cmn', 'arb', 'zsm', 'pes' give
    'zh', 'ar', 'ms', 'fa'); region and script are dropped. A code langcodes cannot parse comes back lowercased."""
    import langcodes

    text = code.strip().replace("_", "-")
    try:
        language = langcodes.Language.get(text).prefer_macrolanguage().language
    except (langcodes.LanguageTagError, ValueError):
        language = None
    return language or text.split("-")[0].lower()


@lru_cache(maxsize=1)
def _macrolanguage_of() -> dict[str, str]:
    """{member: macrolanguage} from the IANA registry (about 450 members; read once, about 60 ms)."""
    from language_data.registry_parser import parse_registry

    return {e["Subtag"]: e["Macrolanguage"] for e in parse_registry() if e.get("Type") == "language" and "Macrolanguage" in e}


def macrolanguage(code: str) -> str:
    """The macrolanguage a language belongs to ('wuu' -> 'zh', 'id' -> 'ms', 'hr' -> 'sh'), else its own code."""
    key = normalize(code)
    return _macrolanguage_of().get(key, key)


def same_language(a: str, b: str) -> bool:
    """Same language, or members of one macrolanguage (Chinese and Wu, Indonesian and Malay, Croatian and Serbian):
    a language detector that answers one for the other is not wrong."""
    return normalize(a) == normalize(b) or macrolanguage(a) == macrolanguage(b)


def language_name(code: str, overrides: Mapping[str, str] | None = None) -> str:
    """The English name of a language code in any ISO 639 form ('de', 'deu', 'ger', 'pt-BR' -> German, Portuguese);
    an unknown code comes back as it was given. `overrides` (code -> name, codes in any form) are asked first."""
    if overrides:
        if code in overrides:
            return overrides[code]
        named = {normalize(k): v for k, v in overrides.items()}
        if normalize(code) in named:
            return named[normalize(code)]
    import langcodes
    from language_data.names import code_to_names

    key = normalize(code)
    if not code_to_names(key):
        return code
    return langcodes.Language.get(key).display_name()
