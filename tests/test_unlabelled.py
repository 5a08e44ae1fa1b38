"""Text without labels as data: `<lang>.unlabelled.{jsonl,txt}`, other splits' texts without their labels, and
what no recipe may ever learn from (evaluation rows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_sentiment_data


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def data(tmp_path) -> Path:
    folder = write_sentiment_data(tmp_path / "data", {"en": 16, "de": 8})
    dev = [json.loads(line) for line in (folder / "de.dev.jsonl").read_text(encoding="utf-8").splitlines()]
    _write(folder / "de.test.jsonl", [{"text": "Uhr schlecht heute", "label": "neg"}])
    # German traffic: two new texts, one repeated, one repeating a test row, one a dev row (de is evaluated in training)
    _write(folder / "de.unlabelled.jsonl", [{"text": "Lampe prima, wirklich"}, {"text": "Kessel mies"},
                                            {"text": "Lampe prima, wirklich"}, {"text": " Uhr schlecht heute"},
                                            {"text": dev[0]["text"]}])
    (folder / "ru.unlabelled.txt").write_text("часы отлично\n\n  стул ужасно  \n", encoding="utf-8")
    return folder


def test_unlabelled_files_are_read_deduplicated_and_never_hold_an_evaluation_row(data):
    from xft_classification import ClassificationOptions, SequenceClassification
    from xft_core.config import load_config
    from xft_core.data import discover
    from xft_core.data.unlabelled import unlabelled_rows

    head = SequenceClassification(ClassificationOptions())
    config = load_config({"data": {"path": str(data)}})
    dataset = discover(data)
    assert dataset.languages("unlabelled") == ["de", "ru"]
    with pytest.warns(UserWarning, match=r"de: 2 unlabelled row\(s\) repeat an evaluation row and are dropped.*"
                                         r"de\.unlabelled\.jsonl line 4, repeating .*de\.test\.jsonl line 1"):
        rows = unlabelled_rows(dataset, config.data, head, evaluated=["en", "de"])
    assert [r["text"] for r in rows["de"].rows] == ["Lampe prima, wirklich", "Kessel mies"]
    assert [line for _, line in rows["de"].where] == [1, 2], "file and line of every kept row"
    assert [r["text"] for r in rows["ru"].rows] == ["часы отлично", "стул ужасно"], "a .txt file: one text a line"
    assert all(set(r) == {"text"} for part in rows.values() for r in part.rows)

    # a split's texts without their labels: German dev rows are unlabelled text when German is not evaluated
    config = load_config({"data": {"path": str(data), "unlabelled_from": ["dev"]}})
    with pytest.warns(UserWarning, match=r"de: 1 unlabelled row\(s\) repeat an evaluation row"):  # the test row only
        rows = unlabelled_rows(dataset, config.data, head, ["de"], evaluated=["en"])
    dev = [r["text"] for r in dataset.get("dev", "de").rows]
    assert [r["text"] for r in rows["de"].rows] == list(dict.fromkeys(["Lampe prima, wirklich", "Kessel mies", *dev]))
    assert all("label" not in r for r in rows["de"].rows)


def test_unlabelled_config_keys_refuse_evaluation_splits(data):
    from xft_core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="data.unlabelled_from: 'test' is the test split"):
        load_config({"data": {"path": str(data), "unlabelled_from": ["test"]}})
    with pytest.raises(ConfigError, match="data.unlabelled_split: 'dev' is also the dev or test split"):
        load_config({"data": {"path": str(data), "unlabelled_split": "dev"}})


def test_data_check_counts_unlabelled_text_and_names_overlap_with_evaluation(data):
    from xft_core.data import discover
    from xft_core.data.checks import check

    report = check(discover(data), detector=None, near_threshold=None)
    kinds = {(f.kind, f.language, f.split, f.line) for f in report.findings}
    assert ("duplicate", "de", "unlabelled", 3) in kinds
    assert {("unlabelled_in_evaluation", "de", "unlabelled", line) for line in (4, 5)} <= kinds, "a test row, a dev row"
    assert not any(f.kind == "conflicting_labels" for f in report.findings), "text without a label conflicts with none"
    assert report.fields.label == "label", "the labelled splits choose the task head, not the unlabelled text"
    counts = {(p.language, p.split): p.rows for p in report.parts}
    assert counts[("de", "unlabelled")] == 5 and counts[("ru", "unlabelled")] == 2
