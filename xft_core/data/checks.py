"""Data checks: counts, label balance, duplicates, near duplicates, wrong-language, empty and over-long rows.

`check` runs everything over a `DataSet` and returns a `Report` (`xft data check` renders it);
`quick_check` is the cheap part that `xft train` runs first and turns into warnings. Every finding names
the file and line of the row, and for a repeat the file and line of the row it repeats. Duplicates are only
looked for within one language: in parallel sets (SIB-200, XNLI) line i is a translation in every language.
"""

from __future__ import annotations

import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Any, Callable, Iterable, Iterator, Mapping

from xft_core.data import DataError, DataSet, Split

SPLIT_ORDER = ("train", "training", "validation", "valid", "dev", "test")
KINDS = {  # kind -> what it means, in report order
    "empty": "empty text",
    "duplicate": "exact duplicate of an earlier row of the same split",
    "duplicate_across_splits": "exact duplicate of a row of an earlier split (leak)",
    "conflicting_labels": "same text as an earlier row, different label",
    "near_duplicate": "near duplicate of an earlier row of the same split",
    "near_duplicate_across_splits": "near duplicate of a row of an earlier split (leak)",
    "cross_language_duplicate": "same text in another language's file (non-parallel data only)",
    "wrong_language": "language ID: another language, 10 times likelier; the file's own under 5%",
    "ambiguous_language": "close call: language ID prefers another language, but not clearly",
    "over_length": "longer than max_length tokens (will be truncated)",
}
MIN_LANGID_CHARS = 20  # below this, language ID is a coin toss; such rows are counted, not judged
CLEARLY = 10  # a wrong language must be this many times likelier than the file's own (py3langid probabilities)
MIN_CROSS_LANGUAGE_CHARS = 20  # names and numbers legitimately repeat across languages
QUICK_TOKEN_LIMIT = 2000  # rows per language and split that `quick_check` tokenizes (tokenizing is its cost)


# ------------------------------------------------------------------------------------------ row fields
@dataclass(frozen=True)
class Fields:
    """Which row fields hold the input text(s) and the labels."""

    text: str = "text"
    pair: str | None = None  # second input (NLI hypothesis, translation target)
    label: str | None = None
    tags: str | None = None  # one tag per token (token classification)


_TEXT_NAMES = ("text", "tokens", "sentence", "source", "premise", "question", "sentence1")
_PAIR_NAMES = ("text_pair", "target", "hypothesis", "sentence2", "context")


def fields_for(rows: Iterable[Mapping[str, Any]], options: Any = None) -> Fields:
    """Fields from a head's options or a config's `task_options`, else guessed from the first rows."""
    get = options.get if isinstance(options, Mapping) else (lambda name, default=None: getattr(options, name, default))
    keys: set[str] = set()
    for row in list(rows)[:50]:
        keys.update(row)
    text = get("text_field") or get("tokens_field") or get("source_field") or next((n for n in _TEXT_NAMES if n in keys), "text")
    pair = get("pair_field") or get("target_field") or next((n for n in _PAIR_NAMES if n in keys), None)
    label = get("label_field") or ("label" if "label" in keys else None)
    tags = get("tags_field") or ("tags" if "tags" in keys else None)
    present = lambda name: name if name in keys else None  # noqa: E731
    return Fields(text=text, pair=present(pair), label=present(label), tags=present(tags))


def text_of(row: Mapping[str, Any], name: str | None) -> str:
    value = row.get(name, "") if name else ""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def input_key(row: Mapping[str, Any], fields: Fields) -> str:
    """What the model sees (text and pair), the unit of exact duplication."""
    text = text_of(row, fields.text).strip()
    return f"{text}\x1f{text_of(row, fields.pair).strip()}" if fields.pair else text


def label_of(row: Mapping[str, Any], fields: Fields) -> Any:
    if fields.label:
        return row.get(fields.label)
    return tuple(row.get(fields.tags) or ()) if fields.tags else None


# ------------------------------------------------------------------------------------ report structure
@dataclass
class Finding:
    kind: str  # one of KINDS
    language: str
    split: str
    file: str
    line: int
    text: str  # the row's text, clipped
    other: dict[str, Any] | None = None  # {"language", "split", "file", "line"} of the row repeated
    detail: dict[str, Any] = field(default_factory=dict)  # similarity, detected language, tokens, labels

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}"


@dataclass
class PartSummary:
    """Counts for one language in one split."""

    language: str
    split: str
    files: list[str]
    rows: int
    labels: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    langid: str = "off"  # "checked", "not checkable" or "off"
    langid_checked: int = 0
    langid_not_judged: int = 0  # shorter than MIN_LANGID_CHARS, or the detector passed
    detected: dict[str, int] = field(default_factory=dict)  # detector label -> rows

    @property
    def imbalance(self) -> float | None:
        """Most over least frequent label (None without labels)."""
        counts = [c for c in self.labels.values() if c]
        return max(counts) / min(counts) if len(counts) > 1 else None


@dataclass
class Report:
    parts: list[PartSummary]
    findings: list[Finding]
    fields: Fields
    parallel: bool
    near_threshold: float | None = None
    detector: str | None = None
    max_length: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def count(self, kind: str, language: str | None = None, split: str | None = None) -> int:
        return sum(1 for f in self.findings if f.kind == kind and language in (None, f.language) and split in (None, f.split))

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        by_part = Counter((f.kind, f.language, f.split) for f in self.findings)
        parts = []
        for p in self.parts:
            item = asdict(p) | {"imbalance": p.imbalance}
            item["issues"] = {kind: by_part[(kind, p.language, p.split)] for kind in KINDS}
            if p.langid == "checked":
                item["wrong_language_rate"] = round(item["issues"]["wrong_language"] / max(p.langid_checked, 1), 4)
            parts.append(item)
        return {
            "fields": asdict(self.fields),
            "parallel": self.parallel,
            "near_threshold": self.near_threshold,
            "language_id": self.detector,
            "max_length": self.max_length,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "totals": {"rows": sum(p.rows for p in self.parts)} | {kind: self.count(kind) for kind in KINDS},
            "kinds": KINDS,
            "parts": parts,
            "findings": [asdict(f) for f in self.findings],
        }


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _ordered_splits(data: DataSet) -> list[str]:
    """train before dev before test, so a repeat is reported on the later split (the leak)."""
    return sorted(data.splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def _languages(data: DataSet) -> list[str]:
    return sorted({language for by_language in data.splits.values() for language in by_language})


def _rows(part: Split) -> Iterator[tuple[dict[str, Any], str, int]]:
    for row, (file, line) in zip(part.rows, part.where):
        yield row, file, line


def _finding(kind: str, part: Split, row: Mapping[str, Any], file: str, line: int, fields: Fields, **kw: Any) -> Finding:
    return Finding(kind, part.language, part.split, file, line, _clip(text_of(row, fields.text)), **kw)


# ----------------------------------------------------------------------------------------------- checks
def summarise(part: Split, fields: Fields) -> PartSummary:
    labels = Counter(str(r[fields.label]) for r in part.rows if r.get(fields.label) is not None) if fields.label else Counter()
    tags = Counter(str(t) for r in part.rows for t in (r.get(fields.tags) or ())) if fields.tags else Counter()
    files = sorted({file for file, _ in part.where})
    return PartSummary(part.language, part.split, files, len(part), dict(sorted(labels.items())), dict(sorted(tags.items())))


def find_empty(data: DataSet, fields: Fields) -> list[Finding]:
    found = []
    for split in _ordered_splits(data):
        for part in data.splits[split].values():
            for row, file, line in _rows(part):
                empty = [name for name in (fields.text, fields.pair) if name and name in row and not text_of(row, name).strip()]
                if not text_of(row, fields.text).strip() and fields.text not in empty:
                    empty.insert(0, fields.text)  # missing altogether
                if empty:
                    found.append(_finding("empty", part, row, file, line, fields, detail={"fields": empty}))
    return found


def find_duplicates(data: DataSet, fields: Fields) -> list[Finding]:
    """Exact repeats within a split and across the splits of one language, and repeats with another label."""
    found = []
    for language in _languages(data):
        earlier: dict[str, tuple[dict[str, Any], Any]] = {}  # key -> (where, label) from earlier splits
        for split in _ordered_splits(data):
            part = data.get(split, language)
            if part is None:
                continue
            here: dict[str, tuple[dict[str, Any], Any]] = {}
            for row, file, line in _rows(part):
                key = input_key(row, fields)
                if not key.strip("\x1f "):
                    continue
                first = here.get(key) or earlier.get(key)
                if first is None:
                    here[key] = ({"language": language, "split": split, "file": file, "line": line}, label_of(row, fields))
                    continue
                where, label = first
                kind = "duplicate" if key in here else "duplicate_across_splits"
                found.append(_finding(kind, part, row, file, line, fields, other=where))
                if label != label_of(row, fields):
                    detail = {"label": label_of(row, fields), "other_label": label}
                    found.append(_finding("conflicting_labels", part, row, file, line, fields, other=where, detail=detail))
            for key, value in here.items():
                earlier.setdefault(key, value)
    return found


def find_cross_language_duplicates(data: DataSet, fields: Fields) -> list[Finding]:
    """The same text under two languages: in non-parallel data, a row filed under the wrong language."""
    found, first = [], {}
    for language in _languages(data):
        for split in _ordered_splits(data):
            part = data.get(split, language)
            for row, file, line in _rows(part) if part else ():
                key = input_key(row, fields)
                if len(key) < MIN_CROSS_LANGUAGE_CHARS:
                    continue
                where = first.setdefault(key, {"language": language, "split": split, "file": file, "line": line})
                if where["language"] != language:
                    found.append(_finding("cross_language_duplicate", part, row, file, line, fields, other=where))
    return found


def is_parallel(data: DataSet, fields: Fields, agreement: float = 0.9) -> bool:
    """Every split holds the same number of rows in every language and (with labels) the same label on at
    least 90% of lines: line i is one item translated, so a few bad lines do not hide the layout."""
    for by_language in data.splits.values():
        parts = list(by_language.values())
        if len(parts) < 2:
            continue
        if len({len(p) for p in parts}) > 1:
            return False
        if fields.label:
            first = [r.get(fields.label) for r in parts[0].rows]
            for part in parts[1:]:
                same = sum(a == r.get(fields.label) for a, r in zip(first, part.rows))
                if same < agreement * len(first):
                    return False
    return len(_languages(data)) > 1


# ------------------------------------------------------------------------------------- near duplicates
class _Normaliser(dict):
    """str.translate table that keeps letters and combining marks (Devanagari, Thai vowel signs) and drops
    punctuation, symbols, digits and spaces; filled lazily per character seen."""

    def __missing__(self, code: int) -> int | None:
        keep = unicodedata.category(chr(code))[0] in "LM"
        self[code] = code if keep else None
        return self[code]


_NORMALISER = _Normaliser()


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(_NORMALISER)


_PERMUTATIONS = 128
_BAND = 4  # rows per LSH band: a pair with 3-gram Jaccard 0.6 becomes a candidate with probability 0.985
_MIN_ESTIMATED_JACCARD = 0.3  # candidates below this (estimated from signatures) are not measured


def _mix(x: Any) -> Any:
    """splitmix64 finaliser: spreads structured integers (code points) over 64 bits."""
    import numpy as np

    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _minhash(texts: list[str], chunk: int = 8192) -> Any:
    """(len(texts), 128) MinHash signatures over character 3-grams: one vectorised pass per permutation
    over all 3-grams of a chunk of texts (memory stays near 16 bytes per character)."""
    import numpy as np

    rng = np.random.default_rng(20240601)
    a = rng.integers(1, 2**63, _PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, _PERMUTATIONS, dtype=np.uint64)
    signatures = np.empty((len(texts), _PERMUTATIONS), dtype=np.uint32)
    for start in range(0, len(texts), chunk):
        padded = [t.ljust(3, "\0") for t in texts[start : start + chunk]]
        lengths = np.array([len(t) for t in padded])
        code = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        with np.errstate(over="ignore"):
            grams = _mix((code[:-2] << np.uint64(42)) ^ (code[1:-1] << np.uint64(21)) ^ code[2:])
        per_text = lengths - 2  # 3-grams that stay inside one text
        offsets = np.cumsum(per_text) - per_text
        grams = grams[np.repeat(np.cumsum(lengths) - lengths - offsets, per_text) + np.arange(per_text.sum())]
        values = np.empty_like(grams)
        with np.errstate(over="ignore"):
            for p in range(_PERMUTATIONS):  # multiply-shift hashing: h(x) = (a x + b) >> 32
                np.multiply(grams, a[p], out=values)
                values += b[p]
                values >>= np.uint64(32)
                signatures[start : start + len(padded), p] = np.minimum.reduceat(values, offsets)
    return signatures


def _candidate_pairs(signatures: Any) -> Any:
    """(i, j) index pairs, i < j, sharing at least one LSH band and plausibly similar; an (n, 2) array."""
    import numpy as np

    found = []
    for start in range(0, signatures.shape[1], _BAND):
        band = signatures[:, start : start + _BAND].astype(np.uint64)
        key = _mix(band[:, 0] ^ (band[:, 1] << np.uint64(32)) ^ _mix(band[:, 2] ^ (band[:, 3] << np.uint64(32))))
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        bounds = np.flatnonzero(np.diff(ordered)) + 1
        starts, ends = np.concatenate(([0], bounds)), np.concatenate((bounds, [len(key)]))
        shared = ends - starts > 1
        for first, last in zip(starts[shared].tolist(), ends[shared].tolist()):
            group = order[first:last].tolist()
            found.extend((x, y) for k, y in enumerate(group) for x in group[:k])
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.unique(np.sort(np.array(found, dtype=np.int64), axis=1), axis=0)
    estimate = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    return pairs[estimate >= _MIN_ESTIMATED_JACCARD]


def similarity(a: str, b: str, threshold: float = 0.0) -> float:
    """difflib ratio of two normalised texts (share of characters in common); 0.0 when surely below threshold."""
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return 0.0
    return matcher.ratio()


def find_near_duplicates(data: DataSet, fields: Fields, threshold: float = 0.9) -> list[Finding]:
    """Rows whose normalised text (casefolded; no punctuation, digits or spaces) is at least `threshold`
    similar to an earlier row of the same language, exact repeats excluded; with a pair field both texts
    must be (an NLI premise with three hypotheses is not a near duplicate). Candidates come from MinHash
    LSH, so the cost grows with the rows, not with the pairs; each candidate is then measured exactly."""
    found = []
    for language in _languages(data):
        rows: list[tuple[Split, dict[str, Any], str, int]] = []
        texts: list[tuple[str, str]] = []  # normalised (text, pair)
        seen: set[str] = set()
        for split in _ordered_splits(data):
            part = data.get(split, language)
            for row, file, line in _rows(part) if part else ():
                key = input_key(row, fields)
                normal = normalise(text_of(row, fields.text)), normalise(text_of(row, fields.pair))
                if key in seen or not normal[0]:
                    continue
                seen.add(key)
                rows.append((part, row, file, line))
                texts.append(normal)
        if len(texts) < 2:
            continue
        best: dict[int, tuple[float, int]] = {}
        for i, j in _candidate_pairs(_minhash([text + pair for text, pair in texts])).tolist():
            score = similarity(texts[i][1], texts[j][1], threshold) if fields.pair else 1.0
            if score >= threshold:
                score = min(score, similarity(texts[i][0], texts[j][0], threshold))
            if score >= threshold and score > best.get(j, (0.0, -1))[0]:
                best[j] = (score, i)
        for j, (score, i) in sorted(best.items()):
            part, row, file, line = rows[j]
            other_part, _, other_file, other_line = rows[i]
            kind = "near_duplicate" if other_part.split == part.split else "near_duplicate_across_splits"
            other = {"language": language, "split": other_part.split, "file": other_file, "line": other_line}
            found.append(_finding(kind, part, row, file, line, fields, other=other, detail={"similarity": round(score, 4)}))
    return found


# -------------------------------------------------------------------------------------- language ID
# ISO 639-1 code (or 639-3 where there is no 639-1) <- the 639-3 and 639-2/B codes of the same language
_CODES = """af afr|am amh|an arg|ar ara arb|as asm|ay aym|az aze azj|ba bak|be bel|bg bul|bn ben|br bre|bs bos|
ca cat|cs ces cze|cy cym wel|da dan|de deu ger|dz dzo|el ell gre|en eng|eo epo|es spa|et est ekk|eu eus baq|
fa fas per pes|ff ful|fi fin|fo fao|fr fra fre|fy fry|ga gle|gd gla|gl glg|gn grn|gu guj|ha hau|he heb|hi hin|
hr hrv|ht hat|hu hun|hy hye arm|id ind|ig ibo|is isl ice|it ita|ja jpn|jv jav|ka kat geo|ki kik|kk kaz|km khm|
kn kan|ko kor|ku kur|ky kir|la lat|lb ltz|lg lug|ln lin|lo lao|lt lit|lv lav lvs|mg mlg plt|mk mkd mac|ml mal|
mn mon khk|mr mar|ms msa may zsm|mt mlt|my mya bur|ne nep npi|nl nld dut|nn nno|no nor nob nb|oc oci|om orm gaz|
or ori ory|pa pan|pl pol|ps pus pbt|pt por|qu que|ro ron rum|ru rus|rw kin|sa san|se sme|si sin|sk slk slo|
sl slv|sn sna|so som|sq sqi alb als|sr srp|st sot|sv swe|sw swa swh|ta tam|te tel|tg tgk|th tha|tk tuk|
tl tgl fil|tr tur|tt tat|ug uig|uk ukr|ur urd|uz uzb uzn|vi vie|vo vol|wa wln|wo wol|xh xho|yo yor|zh zho chi cmn|
zu zul"""
_KEY = {code: group.split()[0] for group in _CODES.replace("\n", "").split("|") for code in group.split()}
# members of an ISO 639-3 macrolanguage: detecting the macrolanguage or a sibling is not a wrong language
_MACRO = {
    **dict.fromkeys(("zh", "wuu", "yue", "hak", "nan", "gan", "hsn", "cjy", "lzh"), "zh"),
    **dict.fromkeys(("ar", "arz", "ary", "apc", "ajp", "acm", "aeb", "ars", "arq", "ayl"), "ar"),
    **dict.fromkeys(("ms", "id", "zlm", "min"), "ms"),
    **dict.fromkeys(("gn", "gug", "gui", "gun"), "gn"),
    **dict.fromkeys(("qu", "quy", "quz", "qub", "qug", "quh"), "qu"),
    **dict.fromkeys(("ay", "ayr", "ayc"), "ay"),
    **dict.fromkeys(("bs", "hr", "sr", "cnr", "hbs", "sh"), "sh"),
    **dict.fromkeys(("no", "nn"), "no"),
    **dict.fromkeys(("lv", "ltg"), "lv"),
    **dict.fromkeys(("uz", "uzs"), "uz"),
    **dict.fromkeys(("ku", "sdh", "kmr", "ckb"), "ku"),
    **dict.fromkeys(("ff", "fuv", "fuc"), "ff"),
    **dict.fromkeys(("kok", "gom", "knn"), "kok"),
    **dict.fromkeys(("fa", "prs"), "fa"),
}


def language_key(code: str) -> str:
    """One scheme for ISO 639-1 and 639-3 codes: 'eng', 'en', 'en-US' and 'eng_Latn' all give 'en'."""
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return _KEY.get(base, base)


def same_language(a: str, b: str) -> bool:
    """Same language, or members of one macrolanguage (Chinese and Wu, Indonesian and Malay, Croatian and Serbian)."""
    ka, kb = language_key(a), language_key(b)
    return ka == kb or _MACRO.get(ka, ka) == _MACRO.get(kb, kb)


class Py3LangidDetector:
    """py3langid with probabilities: a row is in a wrong language when another language wins, the file's
    language (with its macrolanguage relatives) gets less than `min_probability` and the winner is at
    least `CLEARLY` times likelier; otherwise it is a close call (romanised Hindi: wrong; a line of
    product codes in English, where every language scores near nothing: a close call)."""

    def __init__(self, min_probability: float = 0.05):
        from py3langid import langid

        make = getattr(langid.LanguageIdentifier, "from_model_file", None) or langid.LanguageIdentifier.from_pickled_model
        self.identifier = make(langid.MODEL_FILE, norm_probs=True)
        self.labels = list(dict.fromkeys(self.identifier.nb_classes))
        self.min_probability = min_probability
        self._masks: dict[str, Any] = {}
        from importlib.metadata import version

        self.name = f"py3langid {version('py3langid')}"

    def knows(self, language: str, sample: str = "") -> bool:
        return bool(self._mask(language).any())

    def _mask(self, language: str) -> Any:
        if language not in self._masks:
            import numpy as np

            self._masks[language] = np.array([same_language(language, c) for c in self.identifier.nb_classes])
        return self._masks[language]

    def judge(self, text: str, language: str) -> tuple[str, float, float]:
        """(detected label, its probability, probability of the file's language and its relatives)."""
        decide = getattr(self.identifier, "_decide", None)  # the score vector, without rank()'s sort
        if decide is None:
            ranked = self.identifier.rank(text)
            return ranked[0][0], float(ranked[0][1]), sum(float(p) for c, p in ranked if same_language(language, c))
        scores = decide(text)
        best = int(scores.argmax())
        return self.identifier.nb_classes[best], float(scores[best]), float(scores[self._mask(language)].sum())


class HookDetector:
    """Language ID through the `xft_detect_language` hook: codes only, so every mismatch is a wrong
    language (no close calls), and a language counts as known when the hook confirms a row of it."""

    min_probability = 1.0

    def __init__(self, pm: Any, plugins: list[str]):
        self.hook = pm.hook.xft_detect_language
        self.name = f"xft_detect_language hook ({', '.join(plugins)})"

    def knows(self, language: str, sample: str = "") -> bool:
        return self.hook(text=sample or language, candidates=[language]) is not None

    def judge(self, text: str, language: str) -> tuple[str | None, float | None, float | None]:
        return self.hook(text=text, candidates=None), None, None


def default_detector(pm: Any = None) -> Any:
    """py3langid with probabilities unless a third-party plugin answers `xft_detect_language`: the built-in
    `xft_langid` answers with a code only, and telling a wrong language from a close call needs the
    probability the file's own language keeps. A user's own detector plugin wins (through the hook)."""
    plugins: list[str] = []
    if pm is not None:
        plugins = [pm.get_name(impl.plugin) or repr(impl.plugin) for impl in pm.hook.xft_detect_language.get_hookimpls()]
    if any(name != "xft_langid" for name in plugins):
        return HookDetector(pm, plugins)
    try:
        return Py3LangidDetector()
    except ImportError:
        return HookDetector(pm, plugins) if plugins else None


def find_wrong_language(
    data: DataSet, fields: Fields, detector: Any, summaries: Mapping[tuple[str, str], PartSummary]
) -> list[Finding]:
    found = []
    for split in _ordered_splits(data):
        for language, part in sorted(data.splits[split].items()):
            summary = summaries[(language, split)]
            sample = next((t for t in (text_of(r, fields.text).strip() for r in part.rows) if len(t) >= MIN_LANGID_CHARS), "")
            if not detector.knows(language, sample):
                summary.langid = "not checkable"
                continue
            summary.langid = "checked"
            detected: Counter[str] = Counter()
            judged: dict[str, tuple[Any, Any, Any]] = {}  # repeated texts (NLI premises) are judged once
            for row, file, line in _rows(part):
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
                clear = expected is None or (expected < detector.min_probability and probability >= CLEARLY * expected)
                detail = {"detected": label, "probability": probability, "expected_probability": expected}
                detail = {k: round(v, 4) if isinstance(v, float) else v for k, v in detail.items()}
                kind = "wrong_language" if clear else "ambiguous_language"
                found.append(_finding(kind, part, row, file, line, fields, detail=detail))
            summary.langid_checked = sum(detected.values())
            summary.detected = dict(detected.most_common())
    return found


# ------------------------------------------------------------------------------------------ token length
def token_lengths(rows: list[Mapping[str, Any]], fields: Fields, tokenizer: Any, batch: int = 512) -> list[int]:
    """Token counts as the head would encode them (special tokens included, pairs encoded together)."""
    lengths: list[int] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        if fields.text and chunk and isinstance(chunk[0].get(fields.text), list):
            words = [[str(t) for t in r.get(fields.text) or []] for r in chunk]
            encoded = tokenizer(words, is_split_into_words=True, truncation=False)
        elif fields.pair:
            pairs = [text_of(r, fields.pair) for r in chunk]
            encoded = tokenizer([text_of(r, fields.text) for r in chunk], pairs, truncation=False)
        else:
            encoded = tokenizer([text_of(r, fields.text) for r in chunk], truncation=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def find_over_length(data: DataSet, fields: Fields, tokenizer: Any, max_length: int, limit: int = 0) -> list[Finding]:
    """Rows over `max_length` tokens; with `limit`, only the first `limit` rows of each part are tokenized."""
    found = []
    for split in _ordered_splits(data):
        for part in data.splits[split].values():
            rows = part.rows[:limit] if limit else part.rows
            for (row, file, line), n in zip(_rows(part), token_lengths(rows, fields, tokenizer)):
                if n > max_length:
                    detail = {"tokens": n, "max_length": max_length}
                    found.append(_finding("over_length", part, row, file, line, fields, detail=detail))
    return found


# ------------------------------------------------------------------------------------------------- check
def subset(data: DataSet, splits: Iterable[str] | None = None, languages: Iterable[str] | None = None) -> DataSet:
    """Only the named splits and languages (languages matched in either ISO scheme: 'en' finds 'eng')."""
    splits, languages = list(splits or ()), list(languages or ())
    unknown = [s for s in splits if s not in data.splits]
    if unknown:
        raise DataError(f"No split {', '.join(map(repr, unknown))} in the data. Splits: {', '.join(_ordered_splits(data))}")
    present = _languages(data)
    missing = [lang for lang in languages if not any(lang == p or language_key(lang) == language_key(p) for p in present)]
    if missing:
        raise DataError(f"No data for language(s) {', '.join(missing)}. Languages: {', '.join(present)}")
    out = DataSet()
    for split in splits or data.splits:
        for language, part in data.splits[split].items():
            if not languages or any(lang == language or language_key(lang) == language_key(language) for lang in languages):
                out.splits.setdefault(split, {})[language] = part
    return out


def check(
    data: DataSet,
    *,
    fields: Fields | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    near_threshold: float | None = 0.9,
    detector: Any = "default",
    token_limit: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Every check over `data`; `near_threshold=None` skips near duplicates, `detector=None` language ID,
    `token_limit` > 0 tokenizes only that many rows of each language and split."""
    parts = [data.splits[s][lang] for s in _ordered_splits(data) for lang in sorted(data.splits[s])]
    fields = fields or fields_for(row for part in parts for row in part.rows[:5])
    if detector == "default":
        detector = default_detector()
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


# ------------------------------------------------------------------------------------------ quick check
def quick_check(train: Mapping[str, Any], dev: Mapping[str, Any], head: Any, tokenizer: Any, max_length: int) -> list[str]:
    """Warnings worth a look before training: empty rows, duplicates within and across splits, the same text
    with two labels, over-long rows, imbalance. No near duplicates or language ID (`xft data check` has them)."""
    data = DataSet()
    for parts in (train, dev):
        for language, part in parts.items():
            data.splits.setdefault(part.split, {})[language] = part
    if not data.splits:
        return []
    fields = fields_for((row for part in train.values() for row in part.rows[:5]), getattr(head, "options", None))
    report = check(data, fields=fields, tokenizer=tokenizer, max_length=max_length, near_threshold=None, detector=None,
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
