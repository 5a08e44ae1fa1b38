"""Built-in metrics: accuracy and macro-F1 for labels, entity F1 (seqeval) for BIO tags, chrF and BLEU (sacrebleu)."""

from __future__ import annotations

from typing import Sequence

from xft_core.hooks import MetricSpec, hookimpl


def accuracy(predictions: Sequence, references: Sequence) -> float:
    if not references:
        return 0.0
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def macro_f1(predictions: Sequence, references: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes present in references or predictions."""
    classes = sorted(set(references) | set(predictions), key=str)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and r == c for p, r in zip(predictions, references))
        fp = sum(p == c and r != c for p, r in zip(predictions, references))
        fn = sum(p != c and r == c for p, r in zip(predictions, references))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def entity_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    from seqeval.metrics import f1_score

    return float(f1_score([list(r) for r in references], [list(p) for p in predictions]))


def token_accuracy(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    pairs = [(p, r) for ps, rs in zip(predictions, references) for p, r in zip(ps, rs)]
    return sum(p == r for p, r in pairs) / len(pairs) if pairs else 0.0


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


@hookimpl
def xft_metrics():
    yield MetricSpec(name="accuracy", compute=accuracy, description="Share of exact matches.")
    yield MetricSpec(name="macro_f1", compute=macro_f1, description="Mean F1 over classes.")
    yield MetricSpec(name="entity_f1", compute=entity_f1, description="seqeval entity-level F1 (BIO/IOB2).")
    yield MetricSpec(name="token_accuracy", compute=token_accuracy, description="Share of words tagged right.")
    yield MetricSpec(name="chrf", compute=chrf, description="sacrebleu chrF.")
    yield MetricSpec(name="bleu", compute=bleu, description="sacrebleu BLEU.")
