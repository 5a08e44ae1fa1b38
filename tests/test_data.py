"""Data loading: every layout gives the same per-language splits; malformed rows are errors naming the file,
the line and (for labels) the valid choices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from xft_core.config import build_options, load_config
from xft_core.data import DataError, discover, read_rows, validate
from xft_core.hooks.manager import get_spec
from xft_core.training import load_data

# text with a comma and a quote, so CSV quoting is exercised
ROWS = {
    "train": {
        "en": [{"text": "good phone", "label": "pos"}, {"text": "bad, \"awful\" lamp", "label": "neg"},
               {"text": "lovely book", "label": "pos"}, {"text": "poor chair", "label": "neg"}],
        "de": [{"text": "gutes Buch", "label": "pos"}, {"text": "übel, mies", "label": "neg"}, {"text": "toll", "label": "pos"}],
    },
    "dev": {
        "en": [{"text": "great bag", "label": "pos"}, {"text": "terrible watch", "label": "neg"}],
        "de": [{"text": "schlecht", "label": "neg"}, {"text": "prima Uhr", "label": "pos"}],
    },
}


def head_from(pm, **options):
    spec = get_spec(pm, "task_heads", "sequence-classification", config_key="task")
    return spec.build(build_options(spec.options, options, key="task_options"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_delimited(path: Path, rows: list[dict], delimiter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_per_language(folder: Path, ext: str) -> Path:
    for split, by_language in ROWS.items():
        for language, rows in by_language.items():
            path = folder / f"{language}.{split}.{ext}"
            if ext == "jsonl":
                write_jsonl(path, rows)
            else:
                write_delimited(path, rows, "\t" if ext == "tsv" else ",")
    return folder


def flattened(with_split: bool) -> list[dict]:
    """All rows in one table with a `language` column; train rows carry no split when with_split is False."""
    out = []
    for split, by_language in ROWS.items():
        for language, rows in by_language.items():
            for row in rows:
                extra = {"language": language}
                if with_split or split != "train":
                    extra["split"] = split
                out.append({**extra, **row})
    return out


def shape(data) -> dict:
    return {split: {language: part.rows for language, part in parts.items()} for split, parts in data.splits.items()}


# --------------------------------------------------------------------------------------------- layouts
LAYOUTS = {
    "jsonl-per-language": lambda root: write_per_language(root / "d", "jsonl"),
    "csv-per-language": lambda root: write_per_language(root / "d", "csv"),
    "tsv-per-language": lambda root: write_per_language(root / "d", "tsv"),
    "one-jsonl-with-language-and-split": lambda root: write_jsonl(root / "all.jsonl", flattened(with_split=True)),
    "one-jsonl-train-rows-without-split": lambda root: write_jsonl(root / "all.jsonl", flattened(with_split=False)),
    "one-csv-with-language-and-split": lambda root: write_delimited(root / "all.csv", flattened(with_split=True), ","),
    "one-tsv-train-rows-with-empty-split": lambda root: write_delimited(root / "all.tsv", flattened(with_split=False), "\t"),
    "split-files-with-language-column": lambda root: [
        write_jsonl(root / "d" / f"{split}.jsonl", [{"language": lang, **r} for lang, rows in ROWS[split].items() for r in rows])
        for split in ROWS
    ] and root / "d",
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_loads_into_the_same_dataset(tmp_path, layout):
    path = LAYOUTS[layout](tmp_path)
    data = discover(path)
    assert shape(data) == ROWS
    assert data.languages("train") == ["de", "en"]
    assert data.languages("dev") == ["de", "en"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_goes_through_load_data(tmp_path, pm, layout):
    path = LAYOUTS[layout](tmp_path)
    head = head_from(pm)
    data, train, dev = load_data(load_config({"data": {"path": str(path)}}), head)
    assert {k: v.rows for k, v in train.items()} == ROWS["train"]
    assert {k: v.rows for k, v in dev.items()} == ROWS["dev"]
    assert head.labels == ["neg", "pos"]  # fitted on the training rows


def test_rows_remember_their_file_and_line(tmp_path):
    folder = tmp_path / "d"
    write_jsonl(folder / "en.train.jsonl", ROWS["train"]["en"])
    write_delimited(folder / "de.train.csv", ROWS["train"]["de"], ",")
    data = discover(folder)
    en, de = data.get("train", "en"), data.get("train", "de")
    assert en.where == [(str(folder / "en.train.jsonl"), i) for i in range(1, 5)]
    assert de.where == [(str(folder / "de.train.csv"), i) for i in range(2, 5)]  # line 1 is the header


def test_blank_jsonl_lines_are_skipped_but_counted(tmp_path):
    path = tmp_path / "en.train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n   \n{"text": "b", "label": "y"}\n', encoding="utf-8")
    assert [(n, r["text"]) for n, r in read_rows(path)] == [(1, "a"), (4, "b")]


def test_explicit_files_mapping(tmp_path, pm):
    en = write_jsonl(tmp_path / "english.jsonl", ROWS["train"]["en"])
    de = write_delimited(tmp_path / "german.tsv", ROWS["train"]["de"], "\t")
    dev = write_jsonl(tmp_path / "dev-en.jsonl", ROWS["dev"]["en"])
    config = load_config({"data": {"files": {"train": {"en": str(en), "de": str(de)}, "dev": {"en": str(dev)}}}})
    _, train, dev_parts = load_data(config, head_from(pm))
    assert {k: v.rows for k, v in train.items()} == ROWS["train"]
    assert {k: v.rows for k, v in dev_parts.items()} == {"en": ROWS["dev"]["en"]}


# ---------------------------------------------------------------------------------------------- errors
def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"text": "fine text", "label": "pos"})
GOOD_NEG = json.dumps({"text": "other text", "label": "neg"})


def load_error(folder: Path, pm) -> str:
    with pytest.raises(DataError) as info:
        load_data(load_config({"data": {"path": str(folder)}}), head_from(pm))
    return str(info.value)


def test_malformed_json_names_file_and_line(tmp_path, pm):
    bad = write_lines(tmp_path / "d" / "en.train.jsonl", [GOOD, GOOD_NEG, '{"text": "broken", "label": ', GOOD])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "JSON" in message


def test_json_line_that_is_not_an_object_is_named(tmp_path):
    bad = write_lines(tmp_path / "en.train.jsonl", [GOOD, '["text", "pos"]'])
    with pytest.raises(DataError) as info:
        discover(bad.parent)
    message = str(info.value)
    assert str(bad) in message and "line 2" in message and "object" in message


def test_missing_field_names_file_line_and_field(tmp_path, pm):
    bad = write_lines(tmp_path / "d" / "en.train.jsonl", [GOOD, GOOD_NEG, GOOD, json.dumps({"text": "no label here"})])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 4" in message and "'label'" in message


def test_empty_text_names_file_and_line(tmp_path, pm):
    bad = write_lines(tmp_path / "d" / "de.train.jsonl", [GOOD, json.dumps({"text": "   ", "label": "neg"})])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 2" in message and "'text'" in message and "empty" in message


def test_empty_csv_cell_names_the_line_counting_the_header(tmp_path, pm):
    bad = write_delimited(tmp_path / "d" / "en.train.csv", [{"text": "ok", "label": "pos"}, {"text": "", "label": "neg"}], ",")
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "empty" in message


def test_csv_row_with_extra_columns_names_the_line(tmp_path):
    path = write_lines(tmp_path / "en.train.csv", ["text,label", "a,pos", "b,neg,surplus"])
    with pytest.raises(DataError) as info:
        discover(path.parent)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "text, label" in message


def test_dev_label_outside_the_training_labels_lists_the_valid_ones(tmp_path, pm):
    folder = tmp_path / "d"
    write_lines(folder / "en.train.jsonl", [GOOD, GOOD_NEG, GOOD])
    bad = write_lines(folder / "en.dev.jsonl", [GOOD, json.dumps({"text": "meh", "label": "neutral"})])
    message = load_error(folder, pm)
    assert str(bad) in message and "line 2" in message
    assert '"neutral"' in message and "neg, pos" in message


def test_validate_checks_labels_only_after_they_are_fitted(tmp_path, pm):
    folder = tmp_path / "d"
    write_lines(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    write_lines(folder / "en.dev.jsonl", [json.dumps({"text": "meh", "label": "neutral"})])
    data = discover(folder)
    head = head_from(pm)
    validate(data, head, ["train", "dev"])  # no label set yet: any label is accepted
    head.fit_labels(data.get("train", "en").rows)
    with pytest.raises(DataError, match="en.dev.jsonl line 1.*neg, pos"):
        validate(data, head, ["dev"])


def test_fixed_label_list_rejects_other_training_labels(tmp_path, pm):
    folder = tmp_path / "d"
    bad = write_lines(folder / "en.train.jsonl", [GOOD, json.dumps({"text": "t", "label": "postive"})])
    with pytest.raises(DataError) as info:
        load_data(load_config({"data": {"path": str(folder)}}), head_from(pm, labels=["negative", "pos"]))
    message = str(info.value)
    assert str(bad) in message and "line 2" in message and '"postive"' in message and "negative, pos" in message


def test_one_file_row_without_language_is_named(tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", [{"language": "en", "text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    with pytest.raises(DataError) as info:
        discover(path)
    message = str(info.value)
    assert str(path) in message and "line 2" in message and "'language'" in message


def test_folder_without_data_files_says_what_is_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="en.train.jsonl"):
        discover(tmp_path)


def test_missing_train_language_lists_the_available_ones(tmp_path, pm):
    folder = write_per_language(tmp_path / "d", "jsonl")
    config = load_config({"data": {"path": str(folder), "train_languages": ["en", "sw"]}})
    with pytest.raises(DataError, match="'sw'.*de, en"):
        load_data(config, head_from(pm))
