"""The built-in label and tag metrics (`xft_metrics`) agree with scikit-learn on generated cases.

Every table in the docs rests on `macro_f1`, `accuracy` and `token_accuracy`, which xft computes by hand (no
dependency at run time); scikit-learn, a test-only dependency, is the reference most published numbers come from.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xft_metrics import accuracy, macro_f1, token_accuracy

metrics = pytest.importorskip("sklearn.metrics")

LABELS = st.sampled_from(["neg", "neu", "pos", "entailment", "B-PER", "I-PER", "O", "x"])


@st.composite
def label_pairs(draw: st.DrawFn, labels: st.SearchStrategy[str] = LABELS) -> tuple[list[str], list[str]]:
    """(predictions, references) of one length, over a few labels: some classes only predicted, some only true."""
    n = draw(st.integers(min_value=1, max_value=60))
    references = draw(st.lists(labels, min_size=n, max_size=n))
    predictions = draw(st.lists(labels, min_size=n, max_size=n))
    return predictions, references


@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_macro_f1_is_sklearns_over_the_classes_of_either_side(pair):
    predictions, references = pair
    expected = metrics.f1_score(references, predictions, average="macro", zero_division=0.0)
    assert math.isclose(macro_f1(predictions, references), expected, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(label_pairs(st.integers(min_value=0, max_value=4)))
def test_macro_f1_takes_label_ids_as_well(pair):
    predictions, references = pair
    expected = metrics.f1_score(references, predictions, average="macro", zero_division=0.0)
    assert math.isclose(macro_f1(predictions, references), expected, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_accuracy_is_sklearns(pair):
    predictions, references = pair
    assert math.isclose(accuracy(predictions, references), metrics.accuracy_score(references, predictions), rel_tol=1e-12)


@st.composite
def tag_pairs(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    """(predicted tags, true tags) per sentence, one tag per word on both sides, sentences of any length."""
    lengths = draw(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=20))
    if not sum(lengths):
        lengths[0] = 1
    tags = st.sampled_from(["NOUN", "VERB", "ADJ", "PUNCT", "X"])
    references = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    predictions = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    return predictions, references


@settings(max_examples=150, deadline=None)
@given(tag_pairs())
def test_token_accuracy_is_sklearns_accuracy_over_every_word(pair):
    predictions, references = pair
    flat = metrics.accuracy_score([t for s in references for t in s], [t for s in predictions for t in s])
    assert math.isclose(token_accuracy(predictions, references), flat, rel_tol=1e-12)


def test_known_cases():
    """Worked by hand: 3 classes, one never predicted; a class only predicted counts as F1 0."""
    references = ["a", "a", "b", "b", "c"]
    predictions = ["a", "b", "b", "b", "a"]
    # a: tp 1, fp 1, fn 1 -> 0.5; b: tp 2, fp 1, fn 0 -> 0.8; c: tp 0 -> 0
    assert math.isclose(macro_f1(predictions, references), (0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(["z"], ["a"]) == 0.0 and accuracy(["z"], ["a"]) == 0.0
    assert accuracy([], []) == 0.0 and macro_f1([], []) == 0.0 and token_accuracy([[]], [[]]) == 0.0
    # sentence-length does not weigh: 3 of 4 words right, whichever sentence they are in
    assert token_accuracy([["A", "B", "C"], ["D"]], [["A", "B", "C"], ["X"]]) == 0.75
