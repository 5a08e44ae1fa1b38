"""Fuzzing `xft predict`'s three doors (issue 20): texts as arguments (where bytes that are not UTF-8 arrive as
lone surrogates), stdin and `--file` (any bytes, plain lines or JSON Lines). Whatever comes in, the command
prints one JSON line per text (exit 0) or one error naming the argument or the source and line (exit 2); never
an internal error. The router is built once (a real tiny run) and reused, so each example costs one forward."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_inputs_fuzz import data_bytes
from test_predict_cli import run_dir  # noqa: F401 - the module's trained tiny run, a fixture

from xft_core.cli.main import main

FUZZ = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# text with what breaks decoders and tokenizers: lone surrogates (also the \udcXX of a non-UTF-8 argv byte), NUL,
# line breaks, a byte-order mark, right-to-left marks
PIECES = ["good", "phone", " ", "\ud800", "\udcff", "\udc80", "\x00", "\n", "\r", "\ufeff", "\u200f", "é", "Телефон",
          '{"text": "x"}', "{", "\\ud800"]
texts = st.one_of(st.text(max_size=20), st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
jsonl = st.lists(st.dictionaries(st.sampled_from(["text", "language", "text_pair", "x"]),
                                 st.one_of(texts, st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
                                 max_size=4), min_size=1, max_size=4).map(
    lambda rows: "\n".join(json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                           if isinstance(r, dict) else "" for r in rows).encode("utf-8"))
raw_inputs = st.one_of(data_bytes, jsonl, st.lists(texts, max_size=4).map(
    lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")))


@pytest.fixture(scope="module")
def one_router(run_dir):  # noqa: F811
    from xft_core.inference.router import Router

    return Router.from_run(run_dir, capacity=8, batch_size=32, precision="no")


@pytest.fixture
def reuse_router(monkeypatch, one_router):
    from xft_core.inference.router import Router

    monkeypatch.setattr(Router, "from_run", classmethod(lambda cls, *args, **kwargs: one_router))


def check(code: int, out: str, err: str, source: str) -> None:
    assert code in (0, 2), err
    if code == 0:
        for line in out.splitlines():
            assert isinstance(json.loads(line)["text"], str)
    else:
        assert out == "" and err.startswith("error:") and source in err and "internal error" not in err, err


@FUZZ
@given(arguments=st.lists(texts, min_size=1, max_size=4))
def test_any_argument_texts(run_dir, reuse_router, capsys, arguments):  # noqa: F811
    code = main(["predict", "--language", "en", "--", str(run_dir), *arguments])  # texts may start with "-"
    captured = capsys.readouterr()
    check(code, captured.out, captured.err, "text argument")
    if code == 0:
        assert [json.loads(line)["text"] for line in captured.out.splitlines()] == arguments


@FUZZ
@given(raw=raw_inputs)
def test_any_bytes_on_stdin(run_dir, reuse_router, capsys, monkeypatch, raw):  # noqa: F811
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    code = main(["predict", str(run_dir), "--language", "de"])
    captured = capsys.readouterr()
    if code == 2 and "no texts" in captured.err:
        return  # only blank lines
    check(code, captured.out, captured.err, "stdin")


@FUZZ
@given(raw=raw_inputs)
def test_any_bytes_in_a_file(run_dir, reuse_router, capsys, tmp_path_factory, raw):  # noqa: F811
    file = tmp_path_factory.mktemp("predict-fuzz") / "in.txt"
    file.write_bytes(raw)
    code = main(["predict", str(run_dir), "--file", str(file)])
    captured = capsys.readouterr()
    if code == 2 and "no texts" in captured.err:
        return
    check(code, captured.out, captured.err, str(file))


@pytest.mark.parametrize("where", ["argument", "stdin", "file"])
def test_bytes_that_are_not_utf8_name_their_place(run_dir, reuse_router, capsys, monkeypatch, tmp_path, where):  # noqa: F811
    """The issue's cases: a lone surrogate argument was "internal error, TypeError ... a bug in that plugin"; a
    non-UTF-8 --file a UnicodeDecodeError naming no file or line."""
    raw = b"phone good\ncamera \xff bad\n"
    file = tmp_path / "texts.txt"
    file.write_bytes(raw)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    argv = {"argument": ["phone good", raw.decode("utf-8", "surrogateescape").splitlines()[1]], "stdin": [],
            "file": ["--file", str(file)]}[where]
    assert main(["predict", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    expected = {"argument": "text argument 2: byte 0xff that is not UTF-8 at character 8", "stdin": "stdin line 2: not UTF-8",
                "file": f"--file {file} line 2: not UTF-8 (byte 0xff"}[where]
    assert expected in err, err
