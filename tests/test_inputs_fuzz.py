"""Fuzzing the two doors user input comes through: data files and configs. Whatever the bytes, rows, YAML or
`--set` strings, a failure is a DataError naming the file or a ConfigError, never another exception. Derandomized
and bounded, so the run is the same every time and takes seconds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xft_core.config import ConfigError, build_options, load_config, parse_overrides
from xft_core.data import DataError, discover, read_rows, validate
from xft_core.data.readers import DataWarning
from xft_core.hooks.manager import get_spec

FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# bytes that are mostly made of what data files are made of, so the parsers get past their first character
PIECES = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\t", b"\n", b"\r\n", b"\r", b" ", b"text", b"label", b"pos", b"null",
          b"NaN", b"1e999", b"\\ud800", b"\\u00e9", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\xa9", b"\xe9", b"\x00", b"\\",
          b"language", b"en", b"../x", b"split", b"true", b"9" * 5000]
data_bytes = st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.sampled_from(["", " ", "pos", "neg", "\ud800", "a\nb", "en", "../x", "Pos"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
rows = st.lists(st.dictionaries(st.sampled_from(["text", "label", "text_pair", "language", "split", "x"]), values,
                                max_size=5), max_size=6)


def quiet(call, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return call(*args)


def assert_names_file(error: DataError, path: Path) -> None:
    assert str(path) in str(error), f"{error!r} does not name {path}"
    str(error).encode("utf-8")  # printable: no lone surrogate in the message itself


# ------------------------------------------------------------------------------------------------ data
@FUZZ
@given(raw=data_bytes, ext=st.sampled_from(["jsonl", "json", "csv", "tsv", "JSONL"]))
def test_any_bytes_read_as_rows_or_fail_with_a_data_error_naming_the_file(tmp_path_factory, raw, ext):
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / f"en.train.{ext}"
    path.write_bytes(raw)
    try:
        data = quiet(discover, folder)
    except DataError as exc:
        assert_names_file(exc, path)
        return
    for part in data.splits.values():
        for split in part.values():
            assert all(isinstance(row, dict) for row in split.rows)


@FUZZ
@given(raw=data_bytes)
def test_any_bytes_in_one_file_with_a_language_column(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("one") / "all.jsonl"
    path.write_bytes(b'{"language": "en", "text": "a", "label": "b"}\n' + raw)
    try:
        quiet(discover, path)
    except DataError as exc:
        assert_names_file(exc, path)


@FUZZ
@given(items=rows, ext=st.sampled_from(["jsonl", "csv", "tsv"]))
def test_any_rows_through_the_reader_and_the_head(tmp_path_factory, pm, items, ext):
    """Rows written are rows read (none swallowed, none made up), and a row the head accepts has a real label."""
    folder = tmp_path_factory.mktemp("rows")
    path = folder / f"en.train.{ext}"
    if ext == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in items), encoding="utf-8")
        written = len(items)
    else:
        sep = "\t" if ext == "tsv" else ","
        columns = list(dict.fromkeys(k for row in items for k in row)) or ["text"]
        lines = [sep.join(columns)] + [sep.join(str(row.get(c, "")) for c in columns) for row in items]
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        written = sum(1 for line in lines[1:] if line.strip())
    spec = get_spec(pm, "task_heads", "sequence-classification", config_key="task")
    head = spec.build(build_options(spec.options, {}, key="task_options"))
    try:
        data = quiet(discover, folder)
        parts = data.splits.get("train", {})
        head.fit_labels(row for part in parts.values() for row in part.rows if not head.validate_row(row))
        validate(data, head, ["train"])
    except DataError as exc:
        assert_names_file(exc, path)
        return
    read = [row for by_language in data.splits.values() for part in by_language.values() for row in part.rows]
    assert len(read) == written
    for row in read:
        assert isinstance(row["label"], (str, int, float)) and str(row["label"]).strip() in head.labels
        assert isinstance(row["text"], str) and row["text"].strip()
        row["text"].encode("utf-8")


@FUZZ
@given(raw=data_bytes, ext=st.sampled_from(["jsonl", "csv", "tsv"]))
def test_read_rows_yields_line_numbers_and_mappings(tmp_path_factory, raw, ext):
    path = tmp_path_factory.mktemp("lines") / f"x.{ext}"
    path.write_bytes(raw)
    try:
        found = quiet(lambda: list(read_rows(path)))
    except DataError as exc:
        assert_names_file(exc, path)
        return
    numbers = [n for n, _ in found]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)


# ---------------------------------------------------------------------------------------------- config
KEYS = ["name", "model", "task", "strategy", "sampler", "adapters", "data", "training", "strategy_options", "task_options",
        "data_check", "init_from", "output_dir", "unknown"]
DATA_KEYS = ["path", "files", "rows", "train_languages", "eval_languages", "few_shot", "max_train_examples", "language_field"]
TRAINING_KEYS = ["max_steps", "batch_size", "learning_rate", "warmup_ratio", "precision", "max_length", "cpu",
                 "average_checkpoints", "save_every", "load_best_at_end", "eval_every", "lr_scheduler"]
NASTY = ["1e999", "nan", "-1", 10**400, -(10**400), None, [], {}, "", "\ud800", True, "a,b", {"x": [1]}]
config_values = st.one_of(st.sampled_from(NASTY), values, st.integers(min_value=-10, max_value=10**400))


@st.composite
def configs(draw):
    raw = draw(st.dictionaries(st.sampled_from(KEYS), config_values, max_size=3))
    if draw(st.booleans()):
        raw["data"] = draw(st.one_of(st.dictionaries(st.sampled_from(DATA_KEYS), config_values, max_size=3),
                                     st.just({"path": "d"}), config_values))
    else:
        raw["data"] = {"path": "d", draw(st.sampled_from(DATA_KEYS)): draw(config_values)}
    raw["training"] = {draw(st.sampled_from(TRAINING_KEYS)): draw(config_values) for _ in range(draw(st.integers(0, 3)))}
    return raw


@settings(FUZZ, max_examples=400)
@given(raw=configs())
def test_any_config_mapping_loads_or_fails_with_a_config_error(raw):
    try:
        load_config(raw)
    except ConfigError:
        pass


YAML_PIECES = ["data:", " path: d", "\n", "  ", "\t", "- ", "[", "]", "{", "}", ": ", "training:", " max_steps: 5",
               "!!python/object:x", "&a", "*a", "? ", "'", '"', "\\ud800", "\xff", "1e999", "null", "files: {train: {en: 5}}",
               "path: 7"]
yaml_text = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join))


@FUZZ
@given(text=yaml_text, raw=st.binary(max_size=40))
def test_any_yaml_file_loads_or_fails_with_a_config_error(tmp_path_factory, text, raw):
    path = tmp_path_factory.mktemp("yaml") / "run.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


set_strings = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(["training.max_steps", "data.path", "name", "strategy_options.r", "training", "data",
                               "data.files.train.en", "training.learning_rate", "a..b", "", "data.rows.train.en"]),
              st.sampled_from(["=", "==", ":"]), yaml_text).map("".join),
)


@FUZZ
@given(pairs=st.lists(set_strings, min_size=1, max_size=3))
def test_any_set_strings_apply_or_fail_with_a_config_error(pairs):
    try:
        load_config({"data": {"path": "d"}}, parse_overrides(pairs))
    except ConfigError:
        pass
