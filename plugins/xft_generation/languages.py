"""Language codes to English names, for prompt templates ("Translate from German to English: ...").

Covers ISO 639-1, ISO 639-3 and the ISO 639-2/B codes of common languages, plus the macrolanguage and
collective codes that public corpora use (Tatoeba/LASER: `ara`, `ber`, `kur`, `cmn`, `zsm`, ...).
A region or script suffix is ignored (`pt-BR`, `zh_Hant` -> Portuguese, Chinese). An unknown code is
returned as it is, so a template still reads sensibly and the user can add names (`language_names`).
"""

from __future__ import annotations

from typing import Mapping

# "639-1 639-3 [639-2/B ...] | English name"; "-" where a language has no two-letter code.
_TABLE = """
af afr | Afrikaans
am amh | Amharic
- ang | Old English
ar ara arb | Arabic
- arq | Algerian Arabic
- arz | Egyptian Arabic
- ast | Asturian
- awa | Awadhi
az aze azj | Azerbaijani
be bel | Belarusian
bg bul | Bulgarian
bn ben | Bengali
- ber | Berber
bo bod tib | Tibetan
br bre | Breton
bs bos | Bosnian
ca cat | Catalan
- cbk | Chavacano
- ceb | Cebuano
ch cha | Chamorro
cs ces cze | Czech
co cos | Corsican
kw cor | Cornish
- csb | Kashubian
cy cym wel | Welsh
da dan | Danish
de deu ger | German
- dsb | Lower Sorbian
- dtp | Central Dusun
el ell gre | Greek
en eng | English
eo epo | Esperanto
es spa | Spanish
et est ekk | Estonian
eu eus baq | Basque
fa fas per pes | Persian
fi fin | Finnish
fil fil | Filipino
fo fao | Faroese
fr fra fre | French
fy fry | Western Frisian
ga gle | Irish
gd gla | Scottish Gaelic
gl glg | Galician
- gsw | Swiss German
gu guj | Gujarati
ha hau | Hausa
he heb | Hebrew
hi hin | Hindi
hr hrv | Croatian
- hsb | Upper Sorbian
ht hat | Haitian Creole
hu hun | Hungarian
hy hye arm | Armenian
ia ina | Interlingua
id ind | Indonesian
ie ile | Interlingue
ig ibo | Igbo
io ido | Ido
is isl ice | Icelandic
it ita | Italian
ja jpn | Japanese
jv jav | Javanese
ka kat geo | Georgian
kab kab | Kabyle
kk kaz | Kazakh
km khm | Khmer
kn kan | Kannada
ko kor | Korean
ku kur kmr | Kurdish
ky kir | Kyrgyz
- kzj | Coastal Kadazan
la lat | Latin
lb ltz | Luxembourgish
- lfn | Lingua Franca Nova
lo lao | Lao
lt lit | Lithuanian
lv lav lvs | Latvian
- max | North Moluccan Malay
mg mlg plt | Malagasy
- mhr | Eastern Mari
mk mkd mac | Macedonian
ml mal | Malayalam
mn mon khk | Mongolian
mr mar | Marathi
ms msa may zsm | Malay
mt mlt | Maltese
my mya bur | Burmese
nb nob | Norwegian Bokmål
- nds | Low German
ne nep npi | Nepali
nl nld dut | Dutch
nn nno | Norwegian Nynorsk
no nor | Norwegian
- nov | Novial
oc oci | Occitan
- orv | Old Russian
pa pan | Punjabi
- pam | Kapampangan
pl pol | Polish
- pms | Piedmontese
ps pus pbt | Pashto
pt por | Portuguese
ro ron rum | Romanian
ru rus | Russian
rw kin | Kinyarwanda
sa san | Sanskrit
sd snd | Sindhi
si sin | Sinhala
sk slk slo | Slovak
sl slv | Slovenian
so som | Somali
sq sqi alb als | Albanian
sr srp | Serbian
st sot | Southern Sotho
su sun | Sundanese
sv swe | Swedish
sw swa swh | Swahili
- swg | Swabian
ta tam | Tamil
te tel | Telugu
tg tgk | Tajik
th tha | Thai
tk tuk | Turkmen
tl tgl | Tagalog
tr tur | Turkish
tt tat | Tatar
- tzl | Talossan
ug uig | Uyghur
uk ukr | Ukrainian
ur urd | Urdu
uz uzb uzn | Uzbek
vi vie | Vietnamese
- war | Waray
- wuu | Wu Chinese
xh xho | Xhosa
yi yid ydd | Yiddish
yo yor | Yoruba
- yue | Cantonese
zh zho chi cmn | Chinese
zu zul | Zulu
"""


def _parse(table: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for line in table.strip().splitlines():
        codes, name = line.split("|")
        for code in codes.split():
            if code != "-":
                names.setdefault(code, name.strip())
    return names


LANGUAGE_NAMES: dict[str, str] = _parse(_TABLE)


def language_name(code: str, extra: Mapping[str, str] | None = None) -> str:
    """The English name of a language code (`de`, `deu`, `ger`, `pt-BR`); unknown codes come back unchanged.

    `extra` (code -> name) is asked first, so a run can name languages the table lacks or rename one.
    """
    if extra:
        if code in extra:
            return extra[code]
    key = code.strip().replace("_", "-").split("-")[0].lower()
    if extra and key in extra:
        return extra[key]
    return LANGUAGE_NAMES.get(key, code)
