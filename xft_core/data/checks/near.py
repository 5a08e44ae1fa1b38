"""Near duplicates: rows of one language whose normalised texts are at least `threshold` similar.

Comparing every pair costs n² difflib runs, so candidates come first from MinHash LSH (`datasketch`) over
character 3-grams: the cost grows with the rows, not with the pairs. Each candidate is then measured exactly.
"""

from __future__ import annotations

import unicodedata
from difflib import SequenceMatcher
from typing import Any

from xft_core.data.checks.report import Finding
from xft_core.data.checks.rows import finding, input_key, languages, ordered_splits, rows_of, second_field, text_of
from xft_core.data.readers import DataSet, Split
from xft_core.hooks import RowFields

PERMUTATIONS = 128
BANDS = (32, 4)  # LSH bands x rows per band: a pair with 3-gram Jaccard 0.6 becomes a candidate with probability 0.985
MIN_ESTIMATED_JACCARD = 0.3  # candidates below this (estimated from the MinHashes) are not measured
SEED = 20240601


# -------------------------------------------------------------------------------------- normalised text
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


def similarity(a: str, b: str, threshold: float = 0.0) -> float:
    """difflib ratio of two normalised texts (share of characters in common); 0.0 when surely below threshold."""
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return 0.0
    return matcher.ratio()


# --------------------------------------------------------------------------------------------- candidates
def trigrams(texts: list[str]) -> list[list[int]]:
    """Each text's character 3-grams as integers: three code points (21 bits each) packed into 63 bits, exact,
    so the MinHash needs no hash function of its own (its affine64 scheme mixes the bits). One numpy pass."""
    import numpy as np

    padded = [t.ljust(3, "\0") for t in texts]
    code = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    packed = (code[:-2] << np.uint64(42)) | (code[1:-1] << np.uint64(21)) | code[2:]
    grams, start = [], 0
    for text in padded:  # the 3-grams that stay inside one text
        grams.append(packed[start : start + len(text) - 2].tolist())
        start += len(text)
    return grams


def candidate_pairs(texts: list[str]) -> list[tuple[int, int]]:
    """(i, j) index pairs, i < j, that share an LSH band and whose estimated 3-gram Jaccard is plausible."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    minhash = MinHash(num_perm=PERMUTATIONS, seed=SEED, scheme="affine64", hashfunc=int)  # the grams are the hashes
    sketches = []
    for grams in trigrams(texts):  # one MinHash refilled and frozen per text: cheaper than a copy per text
        minhash.clear()
        minhash.update_batch(grams)
        sketches.append(LeanMinHash(minhash))
    lsh = MinHashLSH(num_perm=PERMUTATIONS, params=BANDS)
    with lsh.insertion_session() as session:
        for i, sketch in enumerate(sketches):
            session.insert(i, sketch, check_duplication=False)
    pairs: set[tuple[int, int]] = set()
    for table, buckets in zip(lsh.hashtables, lsh.get_counts()):  # one bucket per band value; read each once
        for bucket, size in buckets.items():
            if size > 1:
                group = sorted(table.get(bucket))
                pairs.update((x, y) for k, y in enumerate(group) for x in group[:k])
    return sorted(p for p in pairs if sketches[p[0]].jaccard(sketches[p[1]]) >= MIN_ESTIMATED_JACCARD)


# ------------------------------------------------------------------------------------------------- find
def find_near_duplicates(data: DataSet, fields: RowFields, threshold: float = 0.9) -> list[Finding]:
    """Rows whose normalised text (casefolded; no punctuation, digits or spaces) is at least `threshold`
    similar to an earlier row of the same language, exact repeats excluded; with a second text (pair or
    target) both must be (an NLI premise with three hypotheses is not a near duplicate)."""
    found = []
    second = second_field(fields)
    for language in languages(data):
        rows: list[tuple[Split, dict[str, Any], str, int]] = []
        texts: list[tuple[str, str]] = []  # normalised (text, second text)
        seen: set[str] = set()
        for split in ordered_splits(data):
            part = data.get(split, language)
            for row, file, line in rows_of(part) if part else ():
                key = input_key(row, fields)
                normal = normalise(text_of(row, fields.text)), normalise(text_of(row, second))
                if key in seen or not normal[0]:
                    continue
                seen.add(key)
                rows.append((part, row, file, line))
                texts.append(normal)
        if len(texts) < 2:
            continue
        best: dict[int, tuple[float, int]] = {}
        for i, j in candidate_pairs([text + pair for text, pair in texts]):
            score = similarity(texts[i][1], texts[j][1], threshold) if second else 1.0
            if score >= threshold:
                score = min(score, similarity(texts[i][0], texts[j][0], threshold))
            if score >= threshold and score > best.get(j, (0.0, -1))[0]:
                best[j] = (score, i)
        for j, (score, i) in sorted(best.items()):
            part, row, file, line = rows[j]
            other_part, _, other_file, other_line = rows[i]
            kind = "near_duplicate" if other_part.split == part.split else "near_duplicate_across_splits"
            other = {"language": language, "split": other_part.split, "file": other_file, "line": other_line}
            found.append(finding(kind, part, row, file, line, fields, other=other, detail={"similarity": round(score, 4)}))
    return found
