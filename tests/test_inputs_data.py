"""Bad data is never accepted silently: swallowed rows, null labels and undecodable bytes are errors naming the
file and line; ignored files, dev-only languages and label sets that differ by language are warnings naming the
file (and the language); a byte-order mark and upper-case extensions are simply accepted."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from xft_core.config import build_options, load_config
from xft_core.data import DataError, discover, read_rows
from xft_core.data.readers import DataWarning
from xft_core.hooks.manager import get_spec
from xft_core.training import load_data

GOOD = {"text": "fine text", "label": "pos"}
GOOD_NEG = {"text": "other text", "label": "neg"}


def head_from(pm, name="sequence-classification", **options):
    spec = get_spec(pm, "task_heads", name, config_key="task")
    return spec.build(build_options(spec.options, options, key="task_options"))


def jsonl(path: Path, rows: list, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode(encoding))
    return path


def text_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def load(folder: Path, pm, **data) -> tuple:
    return load_data(load_config({"data": {"path": str(folder), **data}}), head_from(pm))


def load_error(folder: Path, pm, **data) -> str:
    with pytest.raises(DataError) as info:
        load(folder, pm, **data)
    return str(info.value)


def no_data_warnings(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return call(*args, **kwargs)


# ------------------------------------------------------------------------------------------ null labels
def test_null_label_is_an_error_not_the_class_none(tmp_path, pm):
    bad = jsonl(tmp_path / "d" / "en.train.jsonl", [GOOD, GOOD_NEG, {"text": "t", "label": None}])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "'label'" in message and "null" in message


@pytest.mark.parametrize("value,word", [([1, 2], "list"), ({"a": 1}, "dict")])
def test_label_that_is_not_a_scalar_is_an_error(tmp_path, pm, value, word):
    bad = jsonl(tmp_path / "d" / "en.train.jsonl", [GOOD, GOOD_NEG, {"text": "t", "label": value}])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and word in message


def test_null_text_says_null_not_empty(tmp_path, pm):
    bad = jsonl(tmp_path / "d" / "en.train.jsonl", [GOOD, {"text": None, "label": "neg"}])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 2" in message and "'text' is null" in message


def test_label_with_a_line_break_is_an_error(tmp_path, pm):
    """What a quote that swallows rows leaves in the label column of a CSV file."""
    bad = jsonl(tmp_path / "d" / "en.train.jsonl", [GOOD, GOOD_NEG, {"text": "t", "label": "pos\nbad,neg"}])
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "line break" in message


def test_json_nan_is_an_error(tmp_path):
    bad = jsonl(tmp_path / "en.train.jsonl", [GOOD, '{"text": "t", "label": NaN}'])
    with pytest.raises(DataError, match=r"en.train.jsonl line 2: NaN"):
        list(read_rows(bad))


def test_repeated_json_field_is_an_error(tmp_path):
    bad = jsonl(tmp_path / "en.train.jsonl", ['{"text": "t", "label": "pos", "label": "neg"}'])
    with pytest.raises(DataError, match=r"en.train.jsonl line 1: field 'label' appears twice"):
        list(read_rows(bad))


# ------------------------------------------------------------------------------------ swallowed CSV rows
def test_short_csv_row_is_an_error_naming_the_line(tmp_path, pm):
    bad = text_file(tmp_path / "d" / "en.train.csv", "text,label\ngood,pos\nno label here\nbad,neg\n")
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "fewer" in message and "text, label" in message


def test_short_tsv_row_is_an_error(tmp_path):
    bad = text_file(tmp_path / "en.train.tsv", "text\tlabel\ngood\tpos\nno tab here\n")
    with pytest.raises(DataError, match=r"en.train.tsv line 3: 1 column.*fewer.*tab"):
        list(read_rows(bad))


def test_unclosed_quote_is_an_error_naming_the_line_it_opens(tmp_path, pm):
    bad = text_file(tmp_path / "d" / "en.train.csv", 'text,label\ngood,pos\n"bad lamp,neg\nnice,pos\nawful,neg\n')
    message = load_error(tmp_path / "d", pm)
    assert str(bad) in message and "line 3" in message and "quote" in message and "never closed" in message


def test_quote_closed_in_the_middle_of_a_field_is_an_error(tmp_path):
    bad = text_file(tmp_path / "en.train.csv", 'text,label\ngood,"pos\nbad,neg\n"the" lamp,neg\n')
    with pytest.raises(DataError) as info:
        list(read_rows(bad))
    message = str(info.value)
    assert str(bad) in message and "line 4" in message and "starts at line 2" in message and '""' in message


def test_quoted_field_holding_rows_warns(tmp_path):
    path = text_file(tmp_path / "en.train.csv", 'text,label\ngood,"pos\nbad,neg\nugly,neg"\nnice,pos\n')
    with pytest.warns(DataWarning, match=r"en.train.csv lines 2-4.*quote is unbalanced"):
        rows = list(read_rows(path))
    assert len(rows) == 2


def test_multi_line_quoted_text_stays_one_field(tmp_path):
    path = text_file(tmp_path / "en.train.csv", 'text,label\n"first line\nsecond line",pos\nnext,neg\n')
    rows = no_data_warnings(lambda: list(read_rows(path)))
    assert rows == [(2, {"text": "first line\nsecond line", "label": "pos"}), (4, {"text": "next", "label": "neg"})]


def test_repeated_csv_column_is_an_error(tmp_path):
    bad = text_file(tmp_path / "en.train.csv", "text,label,text\na,pos,b\n")
    with pytest.raises(DataError, match=r"en.train.csv line 1: column 'text' appears twice"):
        list(read_rows(bad))


# --------------------------------------------------------------------------------------- encodings, BOM
@pytest.mark.parametrize("ext", ["jsonl", "csv", "tsv"])
def test_byte_order_mark_is_accepted(tmp_path, pm, ext):
    folder = tmp_path / "d"
    if ext == "jsonl":
        jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG], encoding="utf-8-sig")
    else:
        sep = "\t" if ext == "tsv" else ","
        (folder / f"en.train.{ext}").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"en.train.{ext}").write_text(f"text{sep}label\nfine text{sep}pos\nother text{sep}neg\n", encoding="utf-8-sig")
    _, train, _ = no_data_warnings(load, folder, pm)
    assert train["en"].rows == [GOOD, GOOD_NEG]


def test_json_array_with_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "en.train.json"
    path.write_text(json.dumps([GOOD]), encoding="utf-8-sig")
    assert list(read_rows(path)) == [(1, GOOD)]


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_text_that_is_not_utf8_is_an_error_naming_file_and_line(tmp_path, ext):
    path = tmp_path / f"de.train.{ext}"
    lines = ['{"text": "gut", "label": "pos"}', '{"text": "übel", "label": "neg"}'] if ext == "jsonl" else \
        ["text,label", "gut,pos", "übel,neg"]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert str(path) in message and f"line {len(lines)}" in message and "UTF-8" in message and "0xfc" in message


def test_utf16_file_is_named(tmp_path):
    path = tmp_path / "en.train.jsonl"
    path.write_text(json.dumps(GOOD) + "\n", encoding="utf-16")
    with pytest.raises(DataError, match=r"en.train.jsonl.*UTF-16.*UTF-8"):
        discover(tmp_path)


def test_lone_surrogate_is_an_error_naming_the_field(tmp_path):
    bad = jsonl(tmp_path / "en.train.jsonl", [GOOD, '{"text": "broken \\ud800 escape", "label": "neg"}'])
    with pytest.raises(DataError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert str(bad) in message and "line 2" in message and "'text'" in message and "surrogate" in message
    message.encode("utf-8")  # the message itself can be printed


def test_deeply_nested_json_is_an_error(tmp_path):
    bad = jsonl(tmp_path / "en.train.jsonl", ['{"text": ' + "[" * 100000 + "]" * 100000 + "}"])
    with pytest.raises(DataError, match=r"en.train.jsonl line 1"):
        list(read_rows(bad))


def test_language_field_that_is_not_a_name_is_an_error(tmp_path):
    bad = jsonl(tmp_path / "all.jsonl", [{"language": "en", **GOOD}, {"language": ["de"], **GOOD_NEG}])
    with pytest.raises(DataError, match=r"all.jsonl line 2: field 'language'"):
        discover(bad)


def test_language_field_with_a_path_separator_is_an_error(tmp_path):
    bad = jsonl(tmp_path / "all.jsonl", [{"language": "../../etc", **GOOD}])
    with pytest.raises(DataError, match=r"all.jsonl line 1: field 'language'"):
        discover(bad)


# ------------------------------------------------------------------------------------------- file names
def test_upper_case_extension_is_read(tmp_path):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD])
    jsonl(folder / "de.train.JSONL", [GOOD_NEG])
    text_file(folder / "fr.train.Csv", "text,label\nbon,pos\n")
    data = no_data_warnings(discover, folder)
    assert data.languages("train") == ["de", "en", "fr"]


def test_file_name_outside_the_pattern_warns_naming_file_and_pattern(tmp_path):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD])
    skipped = jsonl(folder / "en.dev.v2.jsonl", [GOOD_NEG])
    text_file(folder / "README.md", "about the data\n")
    with pytest.warns(DataWarning) as record:
        data = discover(folder)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert str(skipped) in messages[0] and "<language>.<split>.<ext>" in messages[0]
    assert data.languages("dev") == []


def test_compressed_data_file_warns(tmp_path):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD])
    (folder / "de.train.jsonl.gz").write_bytes(b"\x1f\x8b")
    with pytest.warns(DataWarning, match=r"de.train.jsonl.gz"):
        discover(folder)


def test_empty_data_file_warns(tmp_path):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD])
    empty = text_file(folder / "de.train.jsonl", "\n")
    with pytest.warns(DataWarning, match=rf"{empty.name}: no rows"):
        data = discover(folder)
    assert data.languages("train") == ["en"]


def test_two_files_for_one_language_and_split_warn(tmp_path):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD])
    text_file(folder / "en.train.csv", "text,label\nother,neg\n")
    with pytest.warns(DataWarning, match=r"en.train.csv.*en.train.jsonl|en.train.jsonl.*en.train.csv"):
        data = discover(folder)
    assert len(data.get("train", "en")) == 2


# --------------------------------------------------------------------------------------- dev-only data
def test_dev_only_language_is_evaluated_zero_shot_with_a_warning(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    jsonl(folder / "en.dev.jsonl", [GOOD])
    fr = jsonl(folder / "fr.dev.jsonl", [GOOD_NEG])
    with pytest.warns(DataWarning) as record:
        _, train, dev = load(folder, pm)
    assert list(train) == ["en"] and sorted(dev) == ["en", "fr"]
    message = " ".join(str(w.message) for w in record)
    assert "'fr'" in message and str(fr) in message and "zero-shot" in message


def test_dev_only_language_with_per_language_adapters_warns_it_is_not_evaluated(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    jsonl(folder / "fr.dev.jsonl", [GOOD_NEG])
    config = load_config({"adapters": "per_language", "data": {"path": str(folder)}})
    with pytest.warns(DataWarning, match=r"'fr'.*neither trained on nor evaluated"):
        _, _, dev = load_data(config, head_from(pm))
    assert "fr" not in dev


def test_explicit_evaluation_languages_are_not_second_guessed(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    jsonl(folder / "fr.dev.jsonl", [GOOD_NEG])
    with pytest.warns(DataWarning) as caught:  # fr, with dev data but not asked for, is not added
        _, _, dev = load(folder, pm, eval_languages=["en"])
    assert dev == {}
    # en was asked for but has no dev data: said (it used to be skipped silently), and only that
    assert [str(w.message).split(":")[1].strip() for w in caught] == ["'en' has no 'dev' data in " + str(folder) + ", so it is "
                                                                      "not evaluated during training (languages with dev data"]


# ------------------------------------------------------------------------------- labels across languages
def test_labels_missing_in_a_language_warn_with_what_each_lacks(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG, {"text": "so so", "label": "neutral"}])
    jsonl(folder / "de.train.jsonl", [GOOD, GOOD_NEG, {"text": "naja", "label": "neutral"}])
    fr = jsonl(folder / "fr.train.jsonl", [GOOD])
    with pytest.warns(DataWarning) as record:
        load(folder, pm)
    message = " ".join(str(w.message) for w in record)
    assert "fr" in message and str(fr) in message and "neg, neutral" in message
    assert "de (" not in message and "en (" not in message  # they lack nothing


def test_a_language_sharing_no_label_with_the_others_is_an_error(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    de = jsonl(folder / "de.train.jsonl", [{"text": "gut", "label": "positiv"}, {"text": "mies", "label": "negativ"}])
    message = load_error(folder, pm)
    assert "de" in message and str(de) in message and "negativ, positiv" in message and "neg, pos" in message


def test_labels_differing_only_in_case_are_an_error(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    jsonl(folder / "de.train.jsonl", [{"text": "gut", "label": "Pos"}, {"text": "mies", "label": "neg"}])
    message = load_error(folder, pm)
    assert "'Pos'" in message and "'pos'" in message and "case" in message


def test_same_labels_in_every_language_load_quietly(tmp_path, pm):
    folder = tmp_path / "d"
    jsonl(folder / "en.train.jsonl", [GOOD, GOOD_NEG])
    jsonl(folder / "de.train.jsonl", [GOOD_NEG, GOOD])
    _, train, _ = no_data_warnings(load, folder, pm)
    assert sorted(train) == ["de", "en"]
