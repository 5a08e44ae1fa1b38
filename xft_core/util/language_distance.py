"""How far apart two languages are, from a language-distance table of a kept library, and the nearest adapters.

Two tables:

- `uriel` (default; `pip install urielplus`): URIEL+ (Khan et al. 2025, the maintained successor of lang2vec's
  URIEL), the mean of its genetic (language family tree), geographic and featural (typological) distances, each in
  [0, 1]. Genetic distance is what "related languages" means (Spanish-French 0.46, English-German 0.63, unrelated
  pairs 1.0); geography and typology break the ties genetics leaves (Swahili and Arabic, Hindi and Russian).
- `cldr` (`langcodes.tag_distance`, always installed): CLDR's language-matching distances, divided by 134, its
  largest value. They say which language a speaker will accept instead of their own (Swahili speakers accept
  English), not how related two languages are (German and Spanish are as far as German and Yoruba), so they are a
  last resort where URIEL+ is not installed.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Mapping, Sequence

from xft_core.util.errors import UserError

TABLES = ("uriel", "cldr")
URIEL_KINDS = ("genetic", "geographic", "featural")


class LanguageDistanceError(UserError):
    """A language the table does not know, or an unknown table; the message names them and the choices."""


def distance(a: str, b: str, table: str = "uriel") -> float:
    """Distance in [0, 1] between languages `a` and `b` (0: the same language)."""
    if table not in TABLES:
        raise LanguageDistanceError(f"unknown language-distance table '{table}'; choose one of: {', '.join(TABLES)}")
    import langcodes

    for code in (a, b):
        if not langcodes.tag_is_valid(code.strip().replace("_", "-")):
            raise LanguageDistanceError(f"'{code}' is not a language code: give an ISO 639 code or BCP 47 tag "
                                        "('sw', 'swh', 'swh_Latn', 'pt-BR')")
    if _alpha3(a) == _alpha3(b):
        return 0.0
    if table == "cldr":
        return min(1.0, (langcodes.tag_distance(a, b) + langcodes.tag_distance(b, a)) / 2 / 134)
    return _uriel(*sorted((_alpha3(a), _alpha3(b))))


def nearest(language: str, adapters: Mapping[str, Sequence[str]], k: int = 3, table: str = "uriel") -> dict[str, float]:
    """The `k` adapters (name -> the languages it was trained on) nearest to `language`, with weights that sum to 1,
    proportional to 1 - distance (uniform where every one of them is at distance 1). Ties go by adapter name."""
    if k < 1:
        raise LanguageDistanceError(f"k must be at least 1, got {k}")
    if not adapters:
        raise LanguageDistanceError(f"no adapters to choose the nearest to '{language}' from")
    far = {name: min(distance(language, lang, table) for lang in languages) for name, languages in adapters.items()
           if languages}
    chosen = sorted(far, key=lambda name: (far[name], name))[:k]
    similarity = {name: 1.0 - far[name] for name in chosen}
    total = sum(similarity.values())
    return {name: (s / total if total > 0 else 1.0 / len(chosen)) for name, s in similarity.items()}


@lru_cache(maxsize=4096)
def _alpha3(code: str) -> str:
    """The ISO 639-3 code URIEL+ is keyed by ('en', 'eng', 'eng_Latn' -> 'eng'); 'zho_Hans' -> 'zho'."""
    import langcodes

    text = code.strip().replace("_", "-")
    try:
        return langcodes.Language.get(text).to_alpha3()
    except (langcodes.LanguageTagError, ValueError, LookupError):
        return text.split("-")[0].lower()


@lru_cache(maxsize=1)
def _uriel_table() -> object:
    try:
        from urielplus import urielplus
    except ImportError:
        raise LanguageDistanceError("the 'uriel' language-distance table needs URIEL+: pip install urielplus "
                                    "(or choose the table 'cldr')") from None
    return urielplus.URIELPlus()


@lru_cache(maxsize=65536)
def _uriel(a: str, b: str) -> float:
    table = _uriel_table()
    values = []
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # URIEL+ logs every distance it computes at INFO
    try:
        for kind in URIEL_KINDS:
            try:
                value = float(table.new_distance(kind, a, b))  # type: ignore[attr-defined]
            except Exception:  # no data of this kind for one of the two
                continue
            if value == value and value >= 0:  # NaN or -1: unknown
                values.append(min(1.0, value))
    finally:
        logging.disable(previous)
    if not values:
        raise LanguageDistanceError(f"URIEL+ has no distance between '{a}' and '{b}' (codes are ISO 639-3: 'eng', "
                                    "'deu', 'swh'); choose the table 'cldr', or give the adapters' weights yourself")
    return sum(values) / len(values)
