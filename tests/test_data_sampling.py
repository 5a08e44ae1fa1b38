"""Rows that stand for a split (issue 20): `--max-examples N` / `data.max_eval_examples` / `max_train_examples` draw
across the file, reproducibly, each label keeping its share (a file sorted by label no longer gives one class), the
same lines in parallel files; training names data it will not read (an unknown split, an evaluation language
without dev data)."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from test_inputs_cli import ROWS, cli_pm, run, write_config  # noqa: F401 - cli_pm: a fixture

from xft_core.data import DataSet, select
from xft_core.data.sampling import spread_indices


def sorted_by_label(data: DataSet, language: str, counts: dict[str, int], split: str = "test") -> None:
    number = 0
    for label, n in counts.items():
        for i in range(n):
            number += 1
            data.add(language, split, {"text": f"{language} {label} {i}", "label": label}, ("f.jsonl", number))


def test_a_file_sorted_by_label_gives_every_label_its_share_the_same_lines_in_every_language():
    data = DataSet()
    for language in ("en", "de"):
        sorted_by_label(data, language, {"business": 60, "sports": 30, "travel": 10})
    first = select(data, "test", ["en", "de"], 10)  # without a label field: spread, but not stratified
    assert len(first["en"]) == 10 and Counter(r["label"] for r in first["en"].rows) != Counter({"business": 10})
    chosen = select(data, "test", ["en", "de"], 10, label_field="label")
    assert Counter(r["label"] for r in chosen["en"].rows) == {"business": 6, "sports": 3, "travel": 1}
    assert [where for where in chosen["en"].where] == [where for where in chosen["de"].where], "parallel files"
    lines = [line for _, line in chosen["en"].where]
    assert lines == sorted(lines) and lines != list(range(1, 11))
    assert select(data, "test", ["en"], 10, label_field="label")["en"].rows == chosen["en"].rows, "reproducible"
    assert len(select(data, "test", ["en"], 0, label_field="label")["en"]) == 100


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(labels=st.lists(st.sampled_from("abcde"), min_size=1, max_size=60), limit=st.integers(0, 70))
def test_stratified_draws_keep_the_size_labels_and_shares(labels, limit):
    kept = spread_indices(len(labels), limit, key="k", labels=labels)
    assert kept == sorted(set(kept)) and all(0 <= i < len(labels) for i in kept)
    assert len(kept) == (len(labels) if not limit or limit >= len(labels) else limit)
    if limit and limit < len(labels):
        sizes, counts = Counter(labels), Counter(labels[i] for i in kept)
        if limit >= len(sizes):
            assert set(counts) == set(sizes), "every label keeps at least one row"
        for label, size in sizes.items():
            assert counts[label] <= size and abs(counts[label] - limit * size / len(labels)) < len(sizes) + 1


def test_an_unknown_split_name_is_a_warning_naming_the_file_and_the_splits_used(tmp_path, cli_pm, capsys):  # noqa: F811
    config = write_config(tmp_path, ROWS)
    (tmp_path / "data" / "en.training.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS * 24))
    code, err = run(capsys, "train", config)  # fails later (there is no model here): the data warnings come first
    err = " ".join(err.split())
    assert f"warning: {tmp_path / 'data' / 'en.training.jsonl'}: split 'training' is not one this run reads" in err, err
    assert "trains on 'train' (data.train_split) and evaluates on 'dev' (data.dev_split)" in err


def test_an_evaluation_language_without_dev_data_is_a_warning(tmp_path, cli_pm, capsys):  # noqa: F811
    config = write_config(tmp_path, ROWS, data={"path": str(tmp_path / "data"), "eval_languages": ["en", "sw"]})
    (tmp_path / "data" / "en.dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    code, err = run(capsys, "train", config)
    err = " ".join(err.split())
    assert "warning: data.eval_languages: 'sw' has no 'dev' data" in err and "not evaluated during training" in err, err
    assert "'en' has no" not in err
