"""One vocabulary across commands (issue 22): every option of every command has help text; a positional that takes
a run, its adapters/ folder or one package has one name; `--max-examples N` and `--json` mean the same everywhere,
and the old spellings scripts may use still work, with a deprecation warning."""

from __future__ import annotations

import argparse

import pytest

from xft_core.cli.main import build_parser, main


def commands(parser: argparse.ArgumentParser, prefix: str = "xft"):
    """(command path, its parser) for every command and sub-command."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{prefix} {name}")


def test_every_option_of_every_command_has_help():
    missing = []
    for path, parser in commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:  # only a deprecated spelling is hidden
                assert type(action).__name__ == "DeprecatedAlias", f"{path} {action.option_strings}: hidden"
                continue
            if not (action.help or "").strip():
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help: " + ", ".join(missing)


def test_a_run_or_adapter_positional_has_one_name():
    names = {}
    for path, parser in commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings and action.metavar and "RUN" in str(action.metavar):
                names[path] = action.metavar
    assert set(names) >= {"xft eval", "xft predict", "xft serve", "xft export"}, names
    assert set(names.values()) == {"RUN_OR_ADAPTER"}, names


def test_bench_transfer_takes_max_examples_and_the_old_eval_rows_still_works_with_a_warning(capsys):
    parser = build_parser()
    args = parser.parse_args(["bench", "transfer", "--max-examples", "8", "--source-max-examples", "16"])
    assert (args.max_examples, args.source_max_examples) == (8, 16)
    with pytest.warns(UserWarning, match="--eval-rows is deprecated; use --max-examples"):
        old = parser.parse_args(["bench", "transfer", "--eval-rows", "8", "--source-eval-rows", "16"])
    assert (old.max_examples, old.source_max_examples) == (8, 16)


def test_data_check_json_prints_and_out_names_the_file(tmp_path, capsys):
    """`--json` printed in doctor but named a file in data check: now it prints everywhere, --out names the file."""
    import json

    data = tmp_path / "data"
    data.mkdir()
    (data / "en.train.jsonl").write_text('{"text": "good phone", "label": "pos"}\n{"text": "bad lamp", "label": "neg"}\n')
    out = tmp_path / "report.json"
    assert main(["data", "check", str(data), "--no-langid", "--out", str(out), "--json", "--split", "train"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) and printed["task"]
    old = tmp_path / "old.json"
    assert main(["data", "check", str(data), "--no-langid", "--json", str(old)]) == 0
    captured = capsys.readouterr()
    assert json.loads(old.read_text())["task"] and "every finding" in captured.out
    assert "warning: --json FILE is deprecated; use --out FILE" in captured.err


def test_split_lists_are_comma_separated_or_repeated():
    parser = build_parser()
    for argv in (["--split", "train,dev"], ["--split", "train", "--split", "dev"], ["--split", "train", "dev"]):
        from xft_core.cli.data import split_names

        assert split_names(parser.parse_args(["data", "check", "x", *argv]).split) == ["train", "dev"]
