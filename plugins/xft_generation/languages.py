"""Language codes to English names, for prompt templates ("Translate from German to English: ...").

Names come from `xft_core.util.languages` (langcodes), so every ISO 639 code is named, including the
macrolanguage and collective codes that public corpora use (Tatoeba/LASER: `ara`, `ber`, `kur`, `cmn`, `zsm`).
A region or script suffix is ignored (`pt-BR`, `zh_Hant` -> Portuguese, Chinese). An unknown code is returned
as it is, so a template still reads sensibly and the user can add names (`language_names`).
"""

from __future__ import annotations

from collections.abc import Mapping

from xft_core.util import languages

# Where CLDR's English name reads worse in a prompt than the name most text uses ("Bangla", "Berber languages").
LANGUAGE_NAMES: dict[str, str] = {"bn": "Bengali", "ber": "Berber"}


def language_name(code: str, extra: Mapping[str, str] | None = None) -> str:
    """The English name of a language code (`de`, `deu`, `ger`, `pt-BR`); unknown codes come back unchanged.

    `extra` (code -> name) is asked first, so a run can name languages langcodes lacks or rename one.
    """
    return languages.language_name(code, {**LANGUAGE_NAMES, **(extra or {})})
