"""Calibration without labels: a per-language label prior estimated from unlabelled text (batch) or content-free
inputs (contextual), stored in the adapter package and applied the same way by eval, predict, serve and the router."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_config, write_sentiment_data

LABELS = ["neg", "pos"]


def _scores(predictions) -> list[float]:
    return [float(p["scores"][label]) for p in predictions for label in LABELS]


# ----------------------------------------------------------------------------------------------- the correction
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=2, max_size=6), st.integers(min_value=0, max_value=5))
def test_a_uniform_prior_changes_no_prediction_and_a_skewed_one_moves_toward_the_rare_label(weights, which):
    from xft_core.evaluation.calibration import correct

    labels = [f"l{i}" for i in range(len(weights))]
    total = sum(weights)
    scores = {label: w / total for label, w in zip(labels, weights)}
    best = max(labels, key=scores.__getitem__)
    prediction = {"label": best, "scores": scores, "logits": list(weights)}
    uniform = correct(prediction, labels, [math.log(1 / len(labels))] * len(labels))
    assert uniform["label"] == best and uniform["logits"] == prediction["logits"]
    assert all(math.isclose(uniform["scores"][k], v, rel_tol=1e-9, abs_tol=1e-12) for k, v in scores.items())
    # a prior that says label `which` is given far too often: it never gains, every other label never loses
    which %= len(labels)
    prior = [math.log(0.9 if i == which else 0.1 / (len(labels) - 1)) for i in range(len(labels))]
    skewed = correct(prediction, labels, prior)
    assert skewed["scores"][labels[which]] <= scores[labels[which]] + 1e-12
    assert math.isclose(sum(skewed["scores"].values()), 1.0, rel_tol=1e-9)


def test_batch_and_batch_log_priors_are_the_mean_and_the_mean_log_of_the_predictions():
    from xft_core.evaluation.calibration import correct, log_prior

    # one row sure of pos, three leaning neg: the mean finds neg the more frequent, the mean log finds pos
    predictions = [{"scores": {"neg": 0.01, "pos": 0.99}}] + [{"scores": {"neg": 0.7, "pos": 0.3}}] * 3
    batch, geometric = log_prior(predictions, LABELS), log_prior(predictions, LABELS, "batch-log")
    assert [math.exp(v) for v in batch] == pytest.approx([(0.01 + 2.1) / 4, (0.99 + 0.9) / 4])
    mean_logs = [(math.log(0.01) + 3 * math.log(0.7)) / 4, (math.log(0.99) + 3 * math.log(0.3)) / 4]
    total = sum(math.exp(v) for v in mean_logs)
    assert [math.exp(v) for v in geometric] == pytest.approx([math.exp(v) / total for v in mean_logs])
    borderline = {"label": "neg", "scores": {"neg": 0.51, "pos": 0.49}}
    assert correct(dict(borderline), LABELS, batch)["label"] == "pos"
    assert correct(dict(borderline), LABELS, geometric)["label"] == "neg"
    same = [{"scores": {"neg": 0.3, "pos": 0.7}}] * 5  # every row alike: both priors are that row, which calibrates to uniform
    for method in ("batch", "batch-log"):
        assert correct(dict(same[0]), LABELS, log_prior(same, LABELS, method))["scores"]["pos"] == pytest.approx(0.5)


def test_a_calibration_file_that_does_not_fit_is_an_error_naming_it(tmp_path):
    from xft_core.adapters import AdapterError
    from xft_core.evaluation.calibration import CALIBRATION, Calibration, correct

    (tmp_path / CALIBRATION).write_text(json.dumps({"labels": LABELS, "languages": {"de": {"method": "batch",
                                                                                           "log_prior": [0.1]}}}))
    with pytest.raises(AdapterError, match=rf"{CALIBRATION}: not a valid calibration file .*one log prior per label"):
        Calibration.read(tmp_path)
    with pytest.raises(AdapterError, match="calibration is for labels neg, pos, but the prediction scores a, b"):
        correct({"label": "a", "scores": {"a": 0.5, "b": 0.5}}, LABELS, [0.0, 0.0])


# -------------------------------------------------------------------------------------------- one tiny run
@pytest.fixture(scope="module")
def calibrated(tiny_model, tmp_path_factory):
    """An English-only prompt-classification adapter, calibrated (batch) on German and Russian unlabelled text."""
    from xft_core.evaluation import calibrate
    from xft_core.testing import plugin_manager
    from xft_core.training import train

    pm = plugin_manager()  # the built-ins, prompt-classification among them
    root = tmp_path_factory.mktemp("calibration")
    data = write_sentiment_data(root / "data", {"en": 48, "de": 8, "ru": 8}, vocabulary=3)
    for language, seed in (("de", 5), ("ru", 6)):
        other = write_sentiment_data(root / f"more-{language}", {language: 24}, seed=seed)
        texts = [json.loads(line)["text"] for line in (other / f"{language}.train.jsonl").read_text().splitlines()]
        (data / f"{language}.unlabelled.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    config = tiny_config(tiny_model("gemma3"), data, root / "runs", name="en", task="prompt-classification",
                         task_options={"template": "{text}\nVerdict:"}, training={"max_steps": 10, "learning_rate": 1e-2})
    config["data"]["train_languages"] = ["en"]
    run = train(config, pm=pm, progress=False)
    estimated = calibrate(run.paths.root, data, pm=pm, progress=False)
    return run, data, pm, estimated


def test_calibrate_stores_a_prior_per_language_in_the_package(calibrated):
    from xft_core.evaluation import Calibration

    run, data, _, estimated = calibrated
    package = run.adapter_dirs["en"]
    stored = Calibration.read(package)
    assert stored is not None and stored.labels == LABELS and sorted(stored.languages) == ["de", "ru"]
    for language, entry in stored.languages.items():
        assert entry["method"] == "batch" and entry["rows"] == len(set(
            (data / f"{language}.unlabelled.txt").read_text(encoding="utf-8").split("\n")) - {""})
        assert math.isclose(sum(math.exp(v) for v in entry["log_prior"]), 1.0, rel_tol=1e-6), "a distribution's logs"
    assert estimated.forward_rows == sum(e["rows"] for e in stored.languages.values())
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(package)).peft_type.value == "LORA", "still a plain peft adapter"


def test_a_calibrated_adapter_scores_the_same_through_router_mixed_batch_predict_eval_and_serve(calibrated, capsys):
    from xft_core.cli.main import main
    from xft_core.evaluation import Calibration, transfer_matrix
    from xft_core.evaluation.predict import predict_rows, with_language
    from xft_core.inference.router import Router

    run, data, pm, _ = calibrated
    package = run.adapter_dirs["en"]
    stored = Calibration.read(package)
    texts = {lang: [r["text"] for r in run.data.get("dev", lang).rows[:6]] for lang in ("de", "ru", "en")}
    router = Router.from_run(run.paths.root, pm=pm, fallback="en")

    # the router, one language per call: the raw prediction with that language's prior subtracted
    alone = {lang: router.predict(texts[lang], lang) for lang in texts}
    model = router.model
    router.strategy.activate(model, router.cache.slot("en"), "de")
    raw = predict_rows(router.base.head, model, router.base.tokenizer, with_language([{"text": t} for t in texts["de"]], "de"),
                       batch_size=8, max_length=router.max_length, precision=router.precision)
    expected = stored.apply(raw, "de")
    assert _scores(alone["de"]) == pytest.approx(_scores(expected), abs=1e-6)
    assert any(abs(a["scores"]["pos"] - r["scores"]["pos"]) > 1e-4 for a, r in zip(alone["de"], raw)), "it corrects"
    assert _scores(alone["en"]) == pytest.approx(_scores(router.predict(texts["en"], "en")))

    # one mixed-language batch: each row corrected for its own language
    order = [(lang, i) for i in range(6) for lang in ("de", "ru", "en")]
    mixed = router.predict([texts[lang][i] for lang, i in order], [lang for lang, _ in order])
    for (lang, i), prediction in zip(order, mixed):
        assert prediction["label"] == alone[lang][i]["label"]
        assert _scores([prediction]) == pytest.approx(_scores([alone[lang][i]]), abs=1e-5)

    # xft predict prints the same scores
    assert main(["predict", str(run.paths.root), *texts["de"], "--language", "de", "--fallback", "en"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert _scores(printed) == pytest.approx(_scores(alone["de"]), abs=1e-5)

    # xft eval: the matrix's macro-F1 is that of the calibrated labels (and of the raw ones with calibrated=False)
    from xft_metrics import macro_f1

    rows = run.data.get("dev", "de").rows
    calibrated_labels = [p["label"] for p in router.predict([r["text"] for r in rows], "de")]
    raw_labels = [p["label"] for p in predict_rows(router.base.head, model, router.base.tokenizer,
                                                   with_language(rows, "de"), batch_size=8, max_length=router.max_length,
                                                   precision=router.precision)]
    truth = [r["label"] for r in rows]
    for flag, labels in ((True, calibrated_labels), (False, raw_labels)):
        matrix = transfer_matrix(run.paths.root, data, split="dev", languages=["de"], pm=pm, progress=False, calibrated=flag)
        assert matrix.rows[-1].cells["de"]["macro_f1"] == pytest.approx(macro_f1(labels, truth))
        assert any("Calibrated without labels" in note for note in matrix.notes) == flag

    # xft serve answers the same
    import httpx

    from xft_core.inference.app import create_app

    app = create_app(router, max_batch=8, max_wait_ms=5)

    async def ask():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                response = await client.post("/v1/predict", json={"inputs": [{"text": t, "language": "de"}
                                                                             for t in texts["de"]]})
                assert response.status_code == 200, response.text
                return response.json()["predictions"]

    served = asyncio.run(ask())
    assert _scores(served) == pytest.approx(_scores(alone["de"]), abs=1e-5)


def test_contextual_calibration_needs_no_text_and_a_tagger_has_nothing_to_calibrate(calibrated, tmp_path, tiny_model):
    import shutil

    from xft_core.adapters import AdapterError
    from xft_core.data import DataError
    from xft_core.evaluation import Calibration, calibrate

    run, data, pm, _ = calibrated
    copy = Path(shutil.copytree(run.paths.root, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoints")))
    with pytest.raises(DataError, match="batch calibration needs unlabelled text of fr .*languages with some: de, ru"):
        calibrate(copy, data, languages=["fr"], pm=pm, progress=False)
    done = calibrate(copy, None, languages=["fr"], method="contextual", pm=pm, progress=False)
    stored = Calibration.read(copy / "adapters" / "en")
    assert stored is not None and stored.languages["fr"]["method"] == "contextual" and done.forward_rows == 3
    assert stored.languages["fr"]["from"] == ["content-free inputs"] and "de" in stored.languages, "others are kept"

    tagging = tmp_path / "tagger"
    (tagging / "adapters" / "en").mkdir(parents=True)
    (tagging / "adapters" / "en" / "xft.json").write_text(json.dumps({"task": "token-classification", "labels": ["X"],
                                                                      "strategy": "lora"}))
    with pytest.raises(AdapterError, match="the token-classification head predicts no label per row"):
        calibrate(tagging, None, method="contextual", pm=pm, progress=False)


@pytest.mark.parametrize("method", ["batch", "batch-log"])
def test_a_teacher_estimating_its_prior_from_the_rows_it_labels_answers_as_calibrate_then_label(calibrated, tmp_path, method):
    import shutil

    from xft_core.config import DataConfig
    from xft_core.data.loading import dataset_from_path
    from xft_core.data.unlabelled import unlabelled_rows
    from xft_core.evaluation import Calibration, calibrate
    from xft_core.evaluation.calibration import calibrated_head
    from xft_core.evaluation.plan import calibration_packages
    from xft_core.evaluation.teacher import teacher_predictions

    run, data, pm, _ = calibrated
    one, two = (Path(shutil.copytree(run.paths.root, tmp_path / name, ignore=shutil.ignore_patterns("checkpoints")))
                for name in ("one", "two"))
    for copy in (one, two):
        (copy / "adapters" / "en" / "calibration.json").unlink()
    head = calibrated_head(calibration_packages(one), pm)
    texts = unlabelled_rows(dataset_from_path(data, pm), DataConfig(path="-"), head, ["de", "ru"])
    rows = {lang: part.rows for lang, part in texts.items()}
    single = teacher_predictions(one, rows, pm=pm, calibrate=method)
    calibrate(two, None, languages=["de", "ru"], method=method, texts=texts, pm=pm, progress=False)
    double = teacher_predictions(two, rows, pm=pm)
    for lang in rows:
        assert [p["label"] for p in single[lang]] == [p["label"] for p in double[lang]]
        assert _scores(single[lang]) == pytest.approx(_scores(double[lang]), abs=1e-6)
    stored = Calibration.read(one / "adapters" / "en")
    assert stored is not None and {lang: e["method"] for lang, e in stored.languages.items()} == {"de": method, "ru": method}
    other = Calibration.read(two / "adapters" / "en")
    assert other is not None and stored.languages["de"]["log_prior"] == pytest.approx(other.languages["de"]["log_prior"])


def test_calibration_after_training_leaves_the_trained_languages_alone_unless_named(tiny_model, tmp_path):
    from xft_core.evaluation import Calibration
    from xft_core.testing import plugin_manager
    from xft_core.training import train

    pm = plugin_manager()
    data = write_sentiment_data(tmp_path / "data", {"en": 32, "de": 8}, vocabulary=3)
    for language in ("en", "de"):  # unlabelled text in the trained language too (often its own training text)
        texts = [json.loads(line)["text"] for line in (data / f"{language}.train.jsonl").read_text().splitlines()]
        (data / f"{language}.unlabelled.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    found = {}
    for name, languages in (("default", []), ("named", ["en", "de"])):
        config = tiny_config(tiny_model("gemma3"), data, tmp_path / "runs", name=name, task="prompt-classification",
                             task_options={"template": "{text}\nVerdict:"}, training={"max_steps": 2})
        config["data"].update(train_languages=["en"], eval_languages=["en"])
        config["calibration"] = {"method": "batch-log", "languages": languages}
        run = train(config, pm=pm, progress=False)
        stored = Calibration.read(run.adapter_dirs["en"])
        assert stored is not None
        found[name] = {lang: entry["method"] for lang, entry in stored.languages.items()}
        assert json.loads((run.paths.root / "run.json").read_text())["calibration"]["languages"] == sorted(found[name])
    assert found == {"default": {"de": "batch-log"}, "named": {"en": "batch-log", "de": "batch-log"}}


def test_domain_calibration_draws_content_free_rows_from_the_languages_own_tokens(calibrated, tmp_path):
    """Fei et al. 2023: 20 rows of random tokens of the language's unlabelled text, as long as its rows on average;
    the same rows each time; the prior is their mean distribution."""
    import shutil

    from xft_core.adapters import check_compatible, load_base, strategy_from_manifest
    from xft_core.config import DataConfig
    from xft_core.data.loading import dataset_from_path
    from xft_core.data.unlabelled import unlabelled_rows
    from xft_core.evaluation import Calibration, calibrate
    from xft_core.evaluation.calibration import DOMAIN_SAMPLES, domain_context_rows, log_prior
    from xft_core.evaluation.predict import predict_rows, with_language
    from xft_core.util.errors import UserError

    run, data, pm, _ = calibrated
    package = run.paths.root / "adapters" / "en"
    base = load_base(package, pm)
    tokenizer, head = base.tokenizer, base.head
    unlabelled = unlabelled_rows(dataset_from_path(data, pm), DataConfig(path="-"), head, ["de"])
    rows = unlabelled["de"].rows  # what calibrate reads: without repeats and evaluation rows
    texts = [row[head.fields.text] for row in rows]
    drawn = domain_context_rows(head, tokenizer, rows, "de")
    assert len(drawn) == DOMAIN_SAMPLES and drawn == domain_context_rows(head, tokenizer, rows, "de"), "reproducible"
    characters = set("".join(texts)) | {" "}
    assert all(set(row[head.fields.text]) <= characters for row in drawn), "only pieces of the language's own text"
    length = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    drawn_length = [len(tokenizer(r[head.fields.text], add_special_tokens=False)["input_ids"]) for r in drawn]
    mean = sum(length) / len(length)  # decoded and tokenized again, neighbouring pieces may merge
    assert mean / 2 <= sum(drawn_length) / len(drawn_length) <= mean * 1.5, "as long as its rows on average"
    assert len({r[head.fields.text] for r in drawn}) > 1 and not {r[head.fields.text] for r in drawn} & set(texts)
    with pytest.raises(UserError, match="domain calibration of xx: no unlabelled rows"):
        domain_context_rows(head, tokenizer, [], "xx")

    copy = Path(shutil.copytree(run.paths.root, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoints")))
    done = calibrate(copy, data, languages=["de"], method="domain", pm=pm, progress=False)
    entry = Calibration.read(copy / "adapters" / "en").languages["de"]
    assert done.forward_rows == DOMAIN_SAMPLES and entry["method"] == "domain" and entry["rows"] == DOMAIN_SAMPLES
    assert entry["from"] == [f"{DOMAIN_SAMPLES} rows of random tokens from {data / 'de.unlabelled.txt'}"]
    _, strategy = strategy_from_manifest(check_compatible(base, copy / "adapters" / "en"), pm)
    model = strategy.attach(base.model, copy / "adapters" / "en", "probe", head)
    predictions = predict_rows(head, model, tokenizer, with_language(drawn, "de"), batch_size=8, max_length=64)
    assert entry["log_prior"] == pytest.approx(log_prior(predictions, head.labels), abs=1e-4), "their mean distribution"
