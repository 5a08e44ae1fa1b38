"""`xft predict` on a tiny run folder: JSON Lines out, texts from arguments, files and stdin, clear errors."""

from __future__ import annotations

import io
import json

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.cli.main import main
from xft_core.training import train

SENTENCES = {
    "en": "The weather is lovely today and the children are playing outside.",
    "de": "Das Wetter ist heute wunderschön und die Kinder spielen draußen.",
    "ru": "Сегодня прекрасная погода, и дети играют на улице.",
}
FIELDS = ["text", "label", "scores", "language", "adapter"]


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    import xft_classification
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_samplers, xft_classification, xft_metrics, xft_sources):
        pm.register(module, name=module.__name__)
    root = tmp_path_factory.mktemp("predict-cli")
    data = write_sentiment_data(root / "data", vocabulary=2)
    config = tiny_config(tiny_model("bert"), data, root / "runs", name="cli", adapters="per_language", sampler="round_robin",
                         training={"max_steps": 6, "learning_rate": 5e-2})
    return train(config, pm=pm, progress=False).paths.root


def lines(out: str) -> list[dict]:
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    for record in records:
        assert list(record) == FIELDS, record
        assert set(record["scores"]) == {"neg", "pos"} and record["label"] in ("neg", "pos")
        assert abs(sum(record["scores"].values()) - 1) < 1e-5
    return records


def test_texts_from_arguments_with_auto_detection(run_dir, capsys):
    assert main(["predict", str(run_dir), *SENTENCES.values()]) == 0
    records = lines(capsys.readouterr().out)
    assert [r["text"] for r in records] == list(SENTENCES.values())
    assert [r["adapter"] for r in records] == list(SENTENCES) == [r["language"] for r in records]


def test_matches_the_router(run_dir, capsys):
    from xft_core.inference.router import Router

    texts = ["phone good", "Telefon schlecht"]
    assert main(["predict", str(run_dir / "adapters"), *texts, "--language", "de"]) == 0
    records = lines(capsys.readouterr().out)
    expected = Router.from_run(run_dir).predict(texts, "de")
    for record, prediction in zip(records, expected):
        assert record["adapter"] == "de" and record["label"] == prediction["label"]
        assert max(abs(record["scores"][k] - prediction["scores"][k]) for k in record["scores"]) < 1e-6


def test_jsonl_file_with_languages_and_fallback(run_dir, tmp_path, capsys):
    file = tmp_path / "in.jsonl"
    rows = [{"text": "phone good", "language": "en"}, {"text": "Buch toll", "language": "de"},
            {"text": "lampe", "language": "fr"},
            {"text": SENTENCES["ru"]}]
    file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["predict", str(run_dir), "--file", str(file), "--fallback", "en", "--capacity", "2"]) == 0
    records = lines(capsys.readouterr().out)
    assert [(r["language"], r["adapter"]) for r in records] == [("en", "en"), ("de", "de"), ("fr", "en"), ("ru", "ru")]


def test_plain_lines_from_stdin(run_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("phone good\n\ncamera bad\n"))
    assert main(["predict", str(run_dir / "adapters" / "en"), "--language", "en"]) == 0
    records = lines(capsys.readouterr().out)
    assert [r["text"] for r in records] == ["phone good", "camera bad"] and {r["adapter"] for r in records} == {"en"}


def test_unknown_language_without_fallback_uses_the_base(run_dir, capsys):
    assert main(["predict", str(run_dir), "lamp", "--language", "xx"]) == 0
    assert lines(capsys.readouterr().out)[0]["adapter"] == "__base__"


@pytest.mark.parametrize("case", ["missing", "not-a-package", "no-texts", "bad-jsonl", "bad-fallback"])
def test_errors_are_clear(case, run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args, expected = {
        "missing": ([str(tmp_path / "nope"), "x"], "no such folder"),
        "not-a-package": ([str(tmp_path), "x"], "holds no xft adapter package"),
        "no-texts": ([str(run_dir)], "no texts"),
        "bad-jsonl": ([str(run_dir), "--file", str(tmp_path / "bad.jsonl")], "line 2"),
        "bad-fallback": ([str(run_dir), "x", "--fallback", "zz"], "fallback adapter 'zz'"),
    }[case]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no text field"}\n')
    assert main(["predict", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "errors never reach stdout, which carries only JSON Lines"
    assert expected in " ".join(captured.err.split()), captured.err


def test_predict_works_for_the_tagging_and_generation_heads(tiny_model, tmp_path, pm, capsys):
    """Raw text goes through each head's `input_row`: words for tagging, the source text for generation."""
    from test_generation import generation_config, write_copy_data
    from test_tagging import ner_rows, tagging_config, write_tagging_data

    import xft_generation
    import xft_tagging

    pm.register(xft_tagging, name="xft_tagging")
    pm.register(xft_generation, name="xft_generation")
    ner = write_tagging_data(tmp_path / "ner", make=ner_rows, sizes={"en": 12, "de": 12}, dev=4)
    tagging = train(tagging_config(tiny_model("bert"), ner, tmp_path, "lora", training={"max_steps": 2}), pm=pm, progress=False)
    copy = write_copy_data(tmp_path / "copy")
    config = generation_config(tiny_model("gemma3"), copy, tmp_path, "causal-lm", name="gen", training={"max_steps": 2})
    config["task_options"]["max_new_tokens"] = 3
    generation = train(config, pm=pm, progress=False)
    capsys.readouterr()

    assert main(["predict", str(tagging.paths.root), "Anna wohnt in Berlin", "--language", "de"]) == 0
    (tags,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert tags["tokens"] == ["Anna", "wohnt", "in", "Berlin"] and len(tags["tags"]) == 4
    assert all(tag in tagging.head.labels for tag in tags["tags"])

    assert main(["predict", str(generation.paths.root), "Guten Morgen.", "--language", "de"]) == 0
    (generated,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert isinstance(generated["text"], str) and generated["adapter"] == "multilingual"


def test_eval_predict_and_serve_score_in_the_runs_precision_and_say_it_once(run_dir, tmp_path, capsys):
    """Eval used the run's training.precision, predict and serve full precision: on a bf16 machine one adapter
    scored differently in eval and in serving. Now all three default to the run's, and print it once."""
    import shutil

    import yaml

    from xft_core.cli.serve import build_router
    from xft_core.inference.router import Router

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["training"]["precision"] = "bf16"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    said = f"precision: bf16, from training.precision of {run / 'config.yaml'}"

    assert main(["predict", str(run), "phone good"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")] == [said]
    assert main(["eval", str(run), "--split", "dev", "--max-examples", "2", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")] == [said]
    assert build_router(run).precision == "bf16" and Router.from_run(run).precision == "bf16"
    assert main(["predict", str(run), "phone good", "--precision", "no"]) == 0
    assert "precision: no, from --precision" in capsys.readouterr().err
