"""Self-training: the teacher labels unlabelled target text, confident rows balanced per class join the training for
K rounds; pseudo-labels are files in the run folder, evaluation rows are never learnt from, rounds resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data


# ------------------------------------------------------------------------------------------- selection
def test_confident_rows_are_balanced_per_class_most_confident_first_and_capped():
    from xft_core.training.pseudo import select_labels

    rows = [{"text": f"t{i}"} for i in range(8)]
    confidences = [("pos", 0.9), ("pos", 0.95), ("pos", 0.6), ("neg", 0.7), ("pos", 0.99), ("neg", 0.4), ("neg", 0.8),
                   ("pos", 0.85)]
    predictions = [{"label": label, "scores": {label: c, "neg" if label == "pos" else "pos": 1 - c}}
                   for label, c in confidences]
    kept = select_labels(rows, predictions, label_field="label", threshold=0.65)
    assert kept.per_class == {"neg": 2, "pos": 2}, "as many of each class as the rarest has above the threshold"
    assert [r["text"] for r in kept.rows] == ["t1", "t3", "t4", "t6"], "the most confident positives, in file order"
    assert kept.rows[0] == {"text": "t1", "label": "pos", "confidence": 0.95} and kept.confident == 6
    capped = select_labels(rows, predictions, label_field="label", threshold=0.0, per_class=1)
    assert capped.per_class == {"neg": 1, "pos": 1} and [r["text"] for r in capped.rows] == ["t4", "t6"]
    unbalanced = select_labels(rows, predictions, label_field="label", threshold=0.65, balance=False)
    assert unbalanced.per_class == {"neg": 2, "pos": 4}


def test_tagging_keeps_confident_words_and_marks_the_rest_unknown():
    from xft_core.training.pseudo import select_tags

    rows = [{"tokens": ["a", "b", "c"]}, {"tokens": ["d", "e"]}, {"tokens": ["f"]}]
    predictions = [{"tags": ["X", "Y", "X"], "confidence": [0.9, 0.3, 0.8]},
                   {"tags": ["Y", "Y"], "confidence": [0.95, 0.9]},
                   {"tags": ["X"], "confidence": [0.2]}]
    kept = select_tags(rows, predictions, tokens_field="tokens", tags_field="tags", threshold=0.5)
    assert kept.rows == [{"tokens": ["a", "b", "c"], "tags": ["X", None, "X"]}, {"tokens": ["d", "e"], "tags": ["Y", "Y"]}]
    assert kept.words == (4, 5) and kept.confident == 2, "the sentence without a confident word is left out"
    best = select_tags(rows, predictions, tokens_field="tokens", tags_field="tags", threshold=0.5, max_rows=1)
    assert best.rows == [{"tokens": ["d", "e"], "tags": ["Y", "Y"]}], "the sentence with most confident words first"


def test_a_tagger_trains_on_rows_with_unknown_tags_and_ignores_those_words(tiny_model):
    from xft_core.models import load_tokenizer
    from xft_tagging import IGNORE, TaggingOptions, TokenClassification

    head = TokenClassification(TaggingOptions())
    rows = [{"tokens": ["Ich", "lese", "gern"], "tags": ["PRON", None, "ADV"]}]
    assert head.validate_row(rows[0]) is None
    assert "only nulls" in head.validate_row({"tokens": ["a"], "tags": [None]})
    head.fit_labels(rows)
    assert head.labels == ["ADV", "PRON"]
    tokenizer = load_tokenizer(tiny_model("bert"))
    feature = head.encode(rows, tokenizer, 32)[0]
    _, word_ids = head.tokenize(rows, tokenizer, 32)
    first = {w: i for i, w in reversed(list(enumerate(word_ids[0]))) if w is not None}
    assert [feature["labels"][first[w]] for w in range(3)] == [1, IGNORE, 0]


# ------------------------------------------------------------------------------------------- end to end
def _data(root: Path) -> tuple[Path, list[str]]:
    """English labelled; German and Russian unlabelled text, some of it copies of their evaluation rows."""
    data = write_sentiment_data(root / "data", {"en": 48, "de": 8, "ru": 8}, vocabulary=2)
    evaluation = []
    for language, seed in (("de", 11), ("ru", 12)):
        other = write_sentiment_data(root / f"more-{language}", {language: 20}, seed=seed, vocabulary=2)
        (data / f"{language}.test.jsonl").write_text((other / f"{language}.dev.jsonl").read_text(encoding="utf-8"),
                                                     encoding="utf-8")
        texts = [json.loads(line)["text"] for line in (other / f"{language}.train.jsonl").read_text().splitlines()]
        tests = [json.loads(line)["text"] for line in (data / f"{language}.test.jsonl").read_text().splitlines()]
        evaluation += tests
        (data / f"{language}.unlabelled.txt").write_text("\n".join([f"{t} {i}" for i, t in enumerate(texts)] + tests[:3]) + "\n",
                                                         encoding="utf-8")
    return data, evaluation


def _config(model: Path, data: Path, out: Path, **self_training) -> dict:
    config = tiny_config(model, data, out, name="st", training={"max_steps": 6, "learning_rate": 5e-2, "save_every": 2})
    config["data"].update(train_languages=["en"], eval_languages=["en", "de"])
    config["self_training"] = {"rounds": 1, "threshold": 0.0, "steps": 4, **self_training}
    return config


def test_self_training_learns_from_pseudo_labels_it_writes_and_never_from_an_evaluation_row(tiny_model, tmp_path, pm):
    from xft_core.evaluation import transfer_matrix
    from xft_core.training import train

    data, evaluation = _data(tmp_path)
    config = _config(tiny_model("bert"), data, tmp_path / "runs", calibration="batch")  # the teacher's, before labelling
    config["calibration"] = {"method": "batch"}  # the student's, after the last round
    with pytest.warns(UserWarning, match=r"de: 3 unlabelled row\(s\) repeat an evaluation row and are dropped"):
        run = train(config, pm=pm, progress=False)
    root = tmp_path / "runs" / "st"
    assert run.paths.root == root and sorted(p.name for p in (root / "rounds").iterdir()) == ["data-1", "round-0", "round-1"]
    pseudo = {lang: [json.loads(line) for line in (root / "rounds" / "data-1" / f"{lang}.jsonl").read_text().splitlines()]
              for lang in ("de", "ru")}
    for lang, rows in pseudo.items():
        assert rows and all(row["label"] in ("neg", "pos") and 0 <= row["confidence"] <= 1 for row in rows), lang
        counts = {label: sum(r["label"] == label for r in rows) for label in ("neg", "pos")}
        assert len(set(c for c in counts.values() if c)) == 1, f"{lang}: balanced per predicted class {counts}"
        assert not {r["text"] for r in rows} & set(evaluation), f"{lang}: an evaluation row was learnt from"
    english = [json.loads(line) for line in (root / "rounds" / "data-1" / "en.jsonl").read_text().splitlines()]
    assert len(english) == 48 and all("confidence" not in r for r in english), "the labelled source rows train too"
    summary = json.loads((root / "rounds" / "data-1" / "summary.json").read_text())
    assert summary["calibration"] == "batch" and summary["languages"]["de"]["kept"] == len(pseudo["de"])
    assert summary["languages"]["de"]["unlabelled_rows"] == 20, "3 evaluation rows dropped from 23"

    round_1 = (root / "rounds" / "round-1" / "config.yaml").read_text()
    assert "self-training" in round_1 and str(root / "rounds" / "round-0" / "adapters") in round_1, "from the teacher"
    info = json.loads((root / "run.json").read_text())
    assert [r["steps"] for r in info["self_training"]["rounds"]] == [6, 4]
    assert info["extra_cost"]["extra_train_steps"] == 4
    unlabelled = sum(part["unlabelled_rows"] for part in summary["languages"].values())
    assert summary["forward_rows"] == unlabelled, "the teacher's prior comes from the rows it labels: one pass each"
    teacher = json.loads(next((root / "rounds" / "round-0" / "adapters").glob("*/calibration.json")).read_text())
    assert {lang: e["method"] for lang, e in teacher["languages"].items()} == {"de": "batch", "ru": "batch"}
    assert info["extra_cost"]["unlabelled_forward_rows"] >= unlabelled
    assert sorted(p.name for p in (root / "adapters").iterdir()) == ["multilingual"]
    manifest = json.loads((root / "adapters" / "multilingual" / "xft.json").read_text())
    assert manifest["languages"] == ["de", "en", "ru"]
    assert json.loads((root / "adapters" / "multilingual" / "calibration.json").read_text())["languages"].keys() == {"de", "ru"}
    assert {r["round"] for r in map(json.loads, (root / "metrics.jsonl").read_text().splitlines())} == {0, 1}
    matrix = transfer_matrix(root, split="test", pm=pm, progress=False)
    assert set(matrix.rows[-1].cells) == {"de", "ru"}, "the run folder evaluates like any run"


def test_an_interrupted_round_resumes_where_it_stopped(tiny_model, tmp_path, pm):
    from xft_core.hooks import hookimpl
    from xft_core.training import train

    class PowerCut:
        @hookimpl
        def xft_after_step(self, run, step, logs):
            if run.config.name == "round-2" and step == 3:
                raise KeyboardInterrupt("power cut")

    data, _ = _data(tmp_path)
    config = _config(tiny_model("bert"), data, tmp_path / "runs", rounds=2)
    pm.register(PowerCut(), name="power-cut")
    with pytest.raises(KeyboardInterrupt):
        train(config, pm=pm, progress=False)
    rounds = tmp_path / "runs" / "st" / "rounds"
    stamps = {p: p.stat().st_mtime_ns for p in (rounds / "round-0" / "run.json", rounds / "round-1" / "run.json",
                                                 rounds / "data-2" / "summary.json")}
    assert not (rounds / "round-2" / "run.json").exists() and (rounds / "round-2" / "checkpoints" / "step-2").is_dir()
    pm.unregister(name="power-cut")
    run = train(config, resume=True, pm=pm, progress=False)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items()), "finished rounds and labels are kept"
    steps = [r["step"] for r in run.history if "loss" in r]
    assert steps == [1, 2, 3, 4], "round 2 continued from its checkpoint of step 2"
    assert json.loads((tmp_path / "runs" / "st" / "run.json").read_text())["extra_cost"]["extra_train_steps"] == 8


def test_self_training_without_unlabelled_text_names_what_is_missing(tiny_model, tmp_path, pm):
    from xft_core.data import DataError
    from xft_core.training import train

    data = write_sentiment_data(tmp_path / "data", {"en": 16, "de": 8})
    config = _config(tiny_model("bert"), data, tmp_path / "runs")
    with pytest.raises(DataError, match="self_training: no target language has unlabelled text"):
        train(config, pm=pm, progress=False)
    config["self_training"]["languages"] = ["de"]
    with pytest.raises(DataError, match="self_training.languages: no unlabelled text for de"):
        train(config, pm=pm, progress=False)


def test_self_training_into_one_adapter_per_language(tiny_model, tmp_path, pm):
    from xft_core.inference.router import Router
    from xft_core.training import train

    data, _ = _data(tmp_path)
    config = _config(tiny_model("bert"), data, tmp_path / "runs", adapters="per_language", per_class=3)
    train(config, pm=pm, progress=False)
    root = tmp_path / "runs" / "st"
    assert sorted(p.name for p in (root / "adapters").iterdir()) == ["de", "en", "ru"], "a student per language"
    summary = json.loads((root / "rounds" / "data-1" / "summary.json").read_text())
    assert all(sum(part["per_class"].values()) <= 2 * 3 for part in summary["languages"].values()), "capped per class"
    router = Router.from_run(root, pm=pm)
    assert [p["adapter"] for p in router.predict(["Telefon gut", "часы плохо"], ["de", "ru"])] == ["de", "ru"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_trained_run_teaches_round_one_without_round_zero_training_again_and_stays_as_it_was(tiny_model, tmp_path, pm):
    from xft_core.adapters import AdapterError
    from xft_core.config import ConfigError
    from xft_core.training import train

    data, _ = _data(tmp_path)
    model = tiny_model("bert")
    plain = _config(model, data, tmp_path / "runs")
    plain.update(name="teacher", self_training={})
    train(plain, pm=pm, progress=False)
    teacher = tmp_path / "runs" / "teacher"
    before = _files(teacher)

    config = _config(model, data, tmp_path / "runs", calibration="batch", teacher=str(teacher))
    run = train(config, pm=pm, progress=False)
    assert _files(teacher) == before, "the teacher's run folder is only read (its prior went into the copy)"
    round_0 = tmp_path / "runs" / "st" / "rounds" / "round-0"
    copied = _files(round_0)
    kept = {k: v for k, v in before.items() if not k.startswith("checkpoints/")}
    assert {k: v for k, v in copied.items() if not k.endswith("calibration.json")} == kept, "a copy, checkpoints left out"
    assert any(k.endswith("calibration.json") for k in copied), "the copy was calibrated before labelling"
    assert [r["step"] for r in run.history if "loss" in r] == [1, 2, 3, 4], "only round 1 trained"
    info = json.loads((tmp_path / "runs" / "st" / "run.json").read_text())
    assert [r["steps"] for r in info["self_training"]["rounds"]] == [6, 4]
    assert info["extra_cost"]["extra_train_steps"] == 4
    assert str(round_0 / "adapters") in (tmp_path / "runs" / "st" / "rounds" / "round-1" / "config.yaml").read_text()

    with pytest.raises(ConfigError, match=r"self_training.teacher: .*nothing.* is not a finished training run"):
        train(_config(model, data, tmp_path / "runs2", teacher=str(tmp_path / "nothing")), pm=pm, progress=False)
    other = tmp_path / "other-task"
    shutil.copytree(teacher, other)
    manifest = next((other / "adapters").glob("*/xft.json"))
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "token-classification"}))
    wrong_task = r"self_training.teacher .*other-task.*: a package of task .token-classification.*leave self_training.teacher"
    with pytest.raises(AdapterError, match=wrong_task):
        train(_config(model, data, tmp_path / "runs3", teacher=str(other)), pm=pm, progress=False)
    with pytest.raises(ConfigError, match="self_training.teacher .* teaches round 1, but self_training.rounds is 0"):
        train(_config(model, data, tmp_path / "runs4", rounds=0, teacher=str(teacher)), pm=pm, progress=False)
