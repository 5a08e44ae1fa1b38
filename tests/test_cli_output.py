"""Output that is not a terminal (a pipe, a log file) is never wrapped or cut, whatever COLUMNS says, and the
commands a script reads have `--json` (issue 20)."""

from __future__ import annotations

import json

import pytest

from xft_core.cli.main import main


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")  # what a CI log or `| grep` used to get was 80 columns or fewer


def test_xft_plugins_piped_prints_whole_names(narrow, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "task head: sequence-classification" in out and "…" not in out
    line = next(line for line in out.splitlines() if "sequence-classification" in line)
    assert "xft_classification" in line  # one row, one line: grep finds the plugin with its name


def test_xft_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    by_name = {p["plugin"]: p for p in listed["plugins"]}
    heads = {(p["kind"], p["name"]) for p in by_name["xft_classification"]["provides"]}
    assert ("task head", "sequence-classification") in heads
    assert by_name["xft_classification"]["distribution"] == "xft" and isinstance(listed["blocked"], list)


def test_console_for_a_pipe_does_not_wrap_long_paths(narrow, capsys):
    from xft_core.util.console import console

    path = "/tmp/" + "/".join(["a-rather-long-folder-name"] * 12)
    out = console()
    out.print(f"adapter [bold]de[/]: {path}")
    out.rule("sib200 / lora / seed 0")
    printed = capsys.readouterr().out
    assert f"adapter de: {path}\n" in printed
    assert max(len(line) for line in printed.splitlines()) < 400  # a rule is not 65,536 characters


def test_xft_train_summary_lines_keep_long_paths_whole(narrow, tiny_model, tmp_path, capsys):
    import yaml

    from conftest import tiny_config, write_sentiment_data

    data = write_sentiment_data(tmp_path / "data", sizes={"en": 16}, dev=4)
    out = tmp_path / "-".join(["a-long-folder-name-for-the-runs"] * 4)
    config = tiny_config(tiny_model("bert"), data, out, name="a-run-with-a-name-long-enough-to-wrap",
                         training={"max_steps": 2, "save_every": 0, "eval_every": 0})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    run = out / "a-run-with-a-name-long-enough-to-wrap"
    adapters = [line for line in lines if line.startswith("adapter ")]
    assert adapters and all(line.endswith(str(run / "adapters" / line.split(":")[0].split()[1])) for line in adapters), lines
    assert f"run folder: {run}" in lines
    assert any(line.startswith("xft run 'a-run-with-a-name-long-enough-to-wrap': 2 steps") for line in lines), lines
