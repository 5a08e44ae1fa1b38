"""Transfer matrix, reports and `xft eval` on tiny runs trained once per module."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.evaluation import (
    MatrixRow,
    TransferMatrix,
    evaluate,
    training_curves,
    transfer_heatmap,
    transfer_matrix,
    write_reports,
)
from xft_core.evaluation.predict import predict_rows, score
from xft_core.training import train

LANGUAGES = ["de", "en", "ru"]


def _fresh_pm():
    import xft_classification
    import xft_full
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    manager = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_full, xft_samplers, xft_classification, xft_metrics, xft_sources):
        manager.register(module, name=module.__name__)
    return manager


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are all overhead: one intra-op thread is as fast alone and much faster on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Train/dev from the shared generator, plus a test split drawn with another seed."""
    folder = write_sentiment_data(tmp_path_factory.mktemp("eval-data"), vocabulary=2)
    extra = write_sentiment_data(tmp_path_factory.mktemp("eval-test"), sizes={lang: 1 for lang in LANGUAGES}, dev=12,
                                 seed=3, vocabulary=2)
    for language in LANGUAGES:
        (extra / f"{language}.dev.jsonl").rename(folder / f"{language}.test.jsonl")
    return folder


@pytest.fixture(scope="module")
def runs(tiny_model, data, tmp_path_factory) -> dict[str, Path]:
    """Three tiny runs: LoRA on English only, full fine-tuning on English only, LoRA per language."""
    out = tmp_path_factory.mktemp("eval-runs")
    model = tiny_model("bert")
    english = {"path": str(data), "train_languages": ["en"]}
    configs = {
        "en-lora": tiny_config(model, data, out, name="en-lora", training={"max_steps": 8, "learning_rate": 5e-2}),
        "en-full": tiny_config(model, data, out, name="en-full", strategy="full", strategy_options={},
                               training={"max_steps": 6, "learning_rate": 1e-2}),
        "per-lang": tiny_config(model, data, out, name="per-lang", adapters="per_language", sampler="round_robin",
                                training={"max_steps": 9, "learning_rate": 5e-2, "eval_every": 3}),
    }
    configs["en-lora"]["data"] = configs["en-full"]["data"] = english
    pm = _fresh_pm()
    return {name: train(config, pm=pm, progress=False).paths.root for name, config in configs.items()}


@pytest.fixture(scope="module")
def matrix(runs, data) -> TransferMatrix:
    return transfer_matrix([runs["en-full"], runs["en-lora"], runs["per-lang"]], data, split="test", pm=_fresh_pm(),
                           include_base=True, each_adapter=True, progress=False)


def _rows(data: Path, language: str) -> list[dict]:
    return [json.loads(line) for line in (data / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines()]


def _independent(package: Path, language: str, data: Path, pm) -> dict[str, float]:
    """Score one adapter package on one language without xft's evaluate module: a freshly loaded base,
    plain peft or the full model's weights, head.predict, engine.score."""
    from safetensors.torch import load_file

    from xft_core.adapters import load_base

    base = load_base(package, pm)
    model = base.model
    if (package / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(package))
    else:
        model.load_state_dict(load_file(str(package / "model.safetensors")), strict=False)
    rows = _rows(data, language)
    predictions = predict_rows(base.head, model, base.tokenizer, rows, batch_size=32, max_length=128)
    return score(base.head, pm, predictions, rows)


def _png_size(path: Path) -> tuple[int, int]:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", blob[16:24])


# ------------------------------------------------------------------------------------------------ matrix
def test_matrix_shape_and_cells_match_an_independent_evaluation(matrix, runs, data, pm):
    assert matrix.languages == LANGUAGES and matrix.split == "test" and matrix.metric_names == ["macro_f1", "accuracy"]
    labels = [r.label for r in matrix.rows]
    assert labels == [
        "base (no adapter)", "en-full: en (zero-shot)", "en-lora: en (zero-shot)", "per-lang: per-language",
        "per-lang: de (zero-shot)", "per-lang: en (zero-shot)", "per-lang: ru (zero-shot)",
    ]
    assert matrix.examples == {lang: 12 for lang in LANGUAGES}
    for row in matrix.rows:
        assert set(row.cells) == set(LANGUAGES)
        assert all(set(c) == {"macro_f1", "accuracy"} and all(0 <= v <= 1 for v in c.values()) for c in row.cells.values())
    assert matrix.row("per-lang: per-language").sources == LANGUAGES and matrix.row("en-lora: en (zero-shot)").sources == ["en"]

    # the full package was evaluated before the LoRA ones and its weights replaced the base's: the LoRA
    # cells prove the base was restored, the full cells that its weights were really used
    en_lora = runs["en-lora"] / "adapters" / "en"
    en_full = runs["en-full"] / "adapters" / "en"
    de_adapter = runs["per-lang"] / "adapters" / "de"
    assert matrix.row("en-lora: en (zero-shot)").cells["de"] == _independent(en_lora, "de", data, pm)
    assert matrix.row("en-full: en (zero-shot)").cells["ru"] == _independent(en_full, "ru", data, pm)
    assert matrix.row("per-lang: de (zero-shot)").cells["en"] == _independent(de_adapter, "en", data, pm)
    # (the base row of a classifier scores a freshly initialised head: random, which is why it is opt-in)


def test_summary_columns_follow_their_definitions(matrix):
    summary = matrix.summary("accuracy")
    english = matrix.row("en-lora: en (zero-shot)").cells
    row = summary["en-lora: en (zero-shot)"]
    others = (english["de"]["accuracy"] + english["ru"]["accuracy"]) / 2
    assert row["in_language"] == english["en"]["accuracy"]
    assert row["transfer"] == pytest.approx(others)
    assert row["transfer_gap"] == pytest.approx(english["en"]["accuracy"] - others)
    assert row["average"] == pytest.approx(sum(c["accuracy"] for c in english.values()) / 3)
    assert matrix.reference().label == "en-full: en (zero-shot)"  # the first one-language row
    reference = matrix.row("en-full: en (zero-shot)").cells
    per_language = matrix.row("per-lang: per-language").cells
    expected = ((per_language["de"]["accuracy"] + per_language["ru"]["accuracy"]) / 2
                - (reference["de"]["accuracy"] + reference["ru"]["accuracy"]) / 2)
    assert summary["per-lang: per-language"]["vs_zero_shot"] == pytest.approx(expected)
    assert summary["per-lang: per-language"]["transfer"] is None  # every language has its own adapter
    assert summary["base (no adapter)"]["in_language"] is None


def test_per_language_row_runs_each_language_through_its_own_adapter(runs, data, pm, monkeypatch):
    import xft_classification
    import xft_lora.strategy

    attached: list[Path] = []  # packages in the order the strategy attached them
    calls: list[tuple[Path, str, str]] = []  # (last attached package, active adapter, language of the rows)
    language_of = {row["text"]: lang for lang in LANGUAGES for row in _rows(data, lang)}
    real_attach, real_predict = xft_lora.strategy.Lora.attach, xft_classification.SequenceClassification.predict_batch

    def spy_attach(self, model, folder, name, head):
        attached.append(Path(folder))
        return real_attach(self, model, folder, name, head)

    def spy_predict(self, model, tokenizer, rows, **kwargs):
        calls.append((attached[-1], model.active_adapter, language_of[rows[0]["text"]]))
        return real_predict(self, model, tokenizer, rows, **kwargs)

    monkeypatch.setattr(xft_lora.strategy.Lora, "attach", spy_attach)
    monkeypatch.setattr(xft_classification.SequenceClassification, "predict_batch", spy_predict)
    result = transfer_matrix(runs["per-lang"], data, split="test", pm=pm, progress=False)
    assert [r.label for r in result.rows] == ["per-language"]
    assert "untrained weights" in result.notes[0], "classification: no base row unless asked, and the report says why"
    assert sorted(language for *_, language in calls) == LANGUAGES, ("one evaluation per language, "
                                                                     "not every adapter on every language")
    assert len(attached) == len(LANGUAGES), "each package attached once"
    for package, active, language in calls:
        assert package == runs["per-lang"] / "adapters" / language and active == "xft-eval"

    monkeypatch.undo()
    de = runs["per-lang"] / "adapters" / "de"
    assert result.row("per-language").cells["de"] == _independent(de, "de", data, pm)


def test_python_api_writes_reports_and_curves(runs, data, pm, tmp_path):
    result = evaluate(runs["per-lang"], data, out=tmp_path / "out", split="test", pm=pm, progress=False)
    assert [r.label for r in result.matrix.rows] == ["per-language"]
    assert sorted(result.paths) == ["csv", "curves:per-lang", "json", "md", "png"]
    assert result.paths["curves:per-lang"] == tmp_path / "out" / "training_curves.png"
    assert all(path.is_file() for path in result.paths.values())


def test_adapter_package_alone_with_languages_and_limit(runs, data, pm):
    result = transfer_matrix(runs["per-lang"] / "adapters" / "ru", data, languages=["ru", "en"], split="dev", max_examples=5,
                             pm=pm, progress=False)
    assert [r.label for r in result.rows] == ["ru (zero-shot)"] and result.languages == ["ru", "en"]
    assert result.examples == {"ru": 5, "en": 5}


# ----------------------------------------------------------------------------------------------- reports
def test_reports_are_written_and_parse(matrix, tmp_path):
    paths = write_reports(matrix, tmp_path / "report")
    assert {p.name for p in paths.values()} == {"transfer.json", "transfer.csv", "transfer.md", "transfer.png",
                                                "sources.json"}  # adapter rows: ranked per language

    saved = json.loads(paths["json"].read_text())
    assert (saved["languages"] == LANGUAGES and saved["primary"] == "macro_f1"
            and saved["reference_row"] == "en-full: en (zero-shot)")
    assert set(saved["definitions"]) == {"average", "in_language", "transfer", "transfer_gap", "vs_zero_shot"}
    again = TransferMatrix.from_dict(saved)
    assert again.values("accuracy") == matrix.values("accuracy") and again.summary() == matrix.summary()

    with paths["csv"].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(matrix.rows) * 2
    for line in table:
        row = matrix.row(line["row"])
        for language in LANGUAGES:
            assert float(line[language]) == row.cells[language][line["metric"]]
    english = next(lang for lang in table if lang["row"] == "en-lora: en (zero-shot)" and lang["metric"] == "macro_f1")
    assert float(english["transfer_gap"]) == pytest.approx(matrix.summary()["en-lora: en (zero-shot)"]["transfer_gap"])

    text = paths["md"].read_text()
    assert "| adapter \\ language | de | en | ru | average | in-language | transfer | transfer gap | vs zero-shot |" in text
    assert all(f"| {r.label} |" in text for r in matrix.rows) and "## accuracy" in text and "transfer gap" in text

    width, height = _png_size(paths["png"])
    assert width >= 700 and height >= 250 and paths["png"].stat().st_size > 15_000


def _synthetic(languages: list[str]) -> TransferMatrix:
    import random

    rng = random.Random(0)

    def cells(score_of):
        return {lang: {"chrf": score_of(lang), "ter": 100 - score_of(lang)} for lang in languages}

    rows = [
        MatrixRow("base (no adapter)", "base", [], cells=cells(lambda lang: rng.uniform(10, 30))),
        MatrixRow("eng (zero-shot)", "adapter", ["eng"], cells=cells(lambda lang: 70 if lang == "eng" else rng.uniform(30, 60))),
        MatrixRow("multilingual (eng+deu+rus+zho)", "adapter", ["eng", "deu", "rus", "zho"],
                  cells=cells(lambda lang: rng.uniform(40, 70))),
        MatrixRow("per-language", "per-language", languages[:-3], cells=cells(lambda lang: rng.uniform(50, 75))),
    ]
    for language in languages[-3:]:  # no adapter of its own
        del rows[-1].cells[language]
    rows[0].cells[languages[1]]["chrf"] = float("nan")
    return TransferMatrix(languages, rows, ["chrf", "ter"], "test", "causal-lm", "tiny", {lang: 50 for lang in languages},
                          {"chrf": True, "ter": False})


def test_forty_language_heatmap_widens_and_reports_still_parse(tmp_path):
    languages = [f"l{i:02d}" for i in range(36)] + ["eng", "deu", "rus", "zho"]
    synthetic = _synthetic(languages)
    width, height = _png_size(transfer_heatmap(synthetic, tmp_path / "wide.png"))
    assert width > 2.5 * height and width >= 1500
    _png_size(transfer_heatmap(synthetic, tmp_path / "lower.png", metric="ter"))  # lower-is-better colour scale
    paths = write_reports(synthetic, tmp_path / "report")
    saved = json.loads(paths["json"].read_text())  # NaN became null: strict JSON
    assert saved["rows"][0]["cells"][languages[1]]["chrf"] is None
    assert "zho" not in saved["rows"][3]["cells"] and "lower is better for: ter" in paths["md"].read_text()
    narrow, _ = _png_size(transfer_heatmap(_synthetic(languages[:4]), tmp_path / "narrow.png"))
    assert narrow < width


def test_training_curves_from_a_run_and_from_forty_languages(runs, tmp_path):
    width, height = _png_size(training_curves(runs["per-lang"], tmp_path / "curves.png"))
    assert width > height and (tmp_path / "curves.png").stat().st_size > 15_000
    run = tmp_path / "long-run"
    run.mkdir()
    lines = []
    for step in range(1, 201):
        lines.append({"step": step, "loss": 2 * math.exp(-step / 60)})
        if step % 50 == 0:
            lines.append({"step": step, "eval": {f"l{i:02d}": {"macro_f1": step / 250 + i / 400} for i in range(40)}})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    _png_size(training_curves(run, tmp_path / "long.png"))


# --------------------------------------------------------------------------------------------------- CLI
def test_xft_eval_on_a_run_folder_writes_the_reports(runs, capsys):
    from xft_core.cli.main import main

    run = runs["en-lora"]
    assert main(["eval", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "macro_f1 on test" in out and "en (zero-shot)" in out
    report = run / "report"
    for name in ("transfer.json", "transfer.csv", "transfer.md", "transfer.png", "training_curves.png"):
        assert (report / name).is_file(), name
    saved = json.loads((report / "transfer.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["en (zero-shot)"] and saved["languages"] == LANGUAGES


def test_xft_eval_json_prints_the_matrix_on_stdout(runs, data, tmp_path, capsys):
    from xft_core.cli.main import main

    code = main(["eval", str(runs["en-lora"]), "--data", str(data), "--split", "dev", "--max-examples", "4",
                 "--out", str(tmp_path / "r"), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)  # stdout is JSON and nothing else
    assert printed["rows"] == json.loads((tmp_path / "r" / "transfer.json").read_text())["rows"]
    assert printed["reports"]["json"] == str(tmp_path / "r" / "transfer.json")


def test_xft_eval_options_and_errors(runs, data, tmp_path, capsys):
    from xft_core.cli.main import main

    package = runs["per-lang"] / "adapters" / "de"
    code = main(["eval", str(package), "--data", str(data), "--split", "dev", "--languages", "de,en", "--max-examples", "4",
                 "--metric", "accuracy", "--base", "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "r" / "transfer.json").read_text())
    assert ([r["label"] for r in saved["rows"]] == ["base (no adapter)", "de (zero-shot)"]
            and saved["examples"] == {"de": 4, "en": 4})
    assert "## accuracy (primary)" in (tmp_path / "r" / "transfer.md").read_text()

    assert main(["eval", str(runs["en-lora"]), "--split", "nope", "--no-progress"]) == 2
    assert "No 'nope' split" in capsys.readouterr().err
    assert main(["eval", str(runs["en-lora"]), "--metric", "bleu", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "Metric 'bleu'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--no-progress"]) == 2
    assert "neither an xft run folder" in " ".join(capsys.readouterr().err.split())


# ---------------------------------------------------------------------------------- every task head
def test_xft_eval_on_a_tagging_run(tiny_model, tmp_path, pm, capsys):
    pytest.importorskip("xft_tagging")
    from test_tagging import ner_rows, tagging_config, write_tagging_data

    import xft_tagging
    from xft_core.cli.main import main

    pm.register(xft_tagging, name="xft_tagging")
    data = write_tagging_data(tmp_path / "ner", make=ner_rows, sizes={"en": 12, "de": 12}, dev=6)
    run = train(tagging_config(tiny_model("bert"), data, tmp_path, "lora", training={"max_steps": 4}),
                pm=pm, progress=False).paths.root
    assert main(["eval", str(run), "--split", "dev", "--no-progress"]) == 0, capsys.readouterr().err
    saved = json.loads((run / "report" / "transfer.json").read_text())
    assert saved["metrics"] == ["entity_f1", "token_accuracy"] and saved["languages"] == ["de", "en"]
    assert [r["label"] for r in saved["rows"]] == ["multilingual (de+en)"]  # a tagger's new classifier: no base row
    assert (run / "report" / "transfer.png").stat().st_size > 10_000


def test_xft_eval_on_a_generation_run_includes_the_base_row(tiny_model, tmp_path, pm, capsys):
    pytest.importorskip("xft_generation")
    from test_generation import generation_config, write_copy_data

    import xft_generation
    from xft_core.cli.main import main

    pm.register(xft_generation, name="xft_generation")
    data = write_copy_data(tmp_path / "copy", languages=("de", "ru"))
    config = generation_config(tiny_model("gemma3"), data, tmp_path, "causal-lm", adapters="per_language",
                               training={"max_steps": 4})
    config["task_options"]["max_new_tokens"] = 6
    run = train(config, pm=pm, progress=False).paths.root
    assert main(["eval", str(run), "--split", "dev", "--no-progress"]) == 0, capsys.readouterr().err
    saved = json.loads((run / "report" / "transfer.json").read_text())
    assert saved["metrics"] == ["chrf", "bleu"] and saved["task"] == "causal-lm"
    assert [r["label"] for r in saved["rows"]] == ["base (no adapter)", "per-language"]
    assert saved["rows"][0]["kind"] == "base" and saved["notes"] == []
    assert all(0 <= cell["chrf"] <= 100 for row in saved["rows"] for cell in row["cells"].values())
    base, per_language = ({lang: c["chrf"] for lang, c in row["cells"].items()} for row in saved["rows"])
    assert saved["reference_row"] == "base (no adapter)"  # no one-language row: the untuned base is the reference
    gain = sum(per_language.values()) / 2 - sum(base.values()) / 2
    assert saved["summary"]["chrf"]["per-language"]["vs_zero_shot"] == pytest.approx(gain)


def test_evaluation_autocast_follows_the_precision():
    import torch

    from xft_core.util.precision import autocast

    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("no", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
