"""`prompt-classification`: label words scored by the model's own LM head (decoders and encoders), per-language
label words, the template, training, the transfer matrix and the router."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import same_labels_but_near_ties, tiny_config
from xft_core.config import build_options
from xft_core.evaluation.predict import predict_rows
from xft_core.hooks import ROW_LANGUAGE
from xft_core.models import load_tokenizer

ROWS = [{"text": "The weather is lovely today.", "label": "pos"},
        {"text": "Die Straßenbahn fährt über die Brücke.", "label": "neg"},
        {"text": "We travelled to the mountains by train and it was a long day", "label": "pos"}]


def first_token(tokenizer, word: str) -> int:
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]


@pytest.fixture
def vpm(pm):
    import xft_verbalizer

    pm.register(xft_verbalizer, name="xft_verbalizer")
    return pm


def _head(**options):
    from xft_verbalizer import PromptClassification, VerbalizerOptions

    head = PromptClassification(build_options(VerbalizerOptions, {"labels": ["neg", "pos"], **options}, key="task_options"))
    return head


def test_decoder_scores_are_the_lm_logits_at_the_label_word_ids(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    folder = tiny_model("gemma3")
    tokenizer = load_tokenizer(folder)
    head = _head(template="{text}\nVerdict:", label_words={"neg": "awful", "pos": "lovely"})
    model = head.build_model(folder, tokenizer).eval()
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    predictions = predict_rows(head, model, tokenizer, ROWS, batch_size=2, max_length=64)
    word_ids = [first_token(tokenizer, "awful"), first_token(tokenizer, "lovely")]
    for row, prediction in zip(ROWS, predictions):
        ids = tokenizer(f"{row['text']}\nVerdict:", return_tensors="pt")
        with torch.no_grad():
            expected = lm(**ids).logits[0, -1, word_ids]
        assert prediction["logits"] == pytest.approx(expected.tolist(), abs=1e-4)
        assert prediction["label"] == ["neg", "pos"][int(expected.argmax())]
        assert sum(prediction["scores"].values()) == pytest.approx(1.0)


def test_encoder_scores_the_mask_token_with_the_masked_lm_head(tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from xft_core.testing import build_tiny_model

    folder = build_tiny_model("xlm-roberta", tmp_path / "xlmr-mlm", masked_lm=True)
    tokenizer = load_tokenizer(folder)
    head = _head(template="{text} It was {mask}.", label_words={"neg": "bad", "pos": "good"})
    model = head.build_model(folder, tokenizer).eval()
    assert head.masked, "an encoder is scored through its mask token"
    lm = AutoModelForMaskedLM.from_pretrained(folder).eval()
    predictions = predict_rows(head, model, tokenizer, ROWS, batch_size=3, max_length=64)
    word_ids = [first_token(tokenizer, "bad"), first_token(tokenizer, "good")]
    for row, prediction in zip(ROWS, predictions):
        ids = tokenizer(f"{row['text']} It was {tokenizer.mask_token}.", return_tensors="pt")
        position = int((ids["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0])
        with torch.no_grad():
            expected = lm(**ids).logits[0, position, word_ids]
        assert prediction["logits"] == pytest.approx(expected.tolist(), abs=1e-4)


def test_an_encoder_without_its_masked_lm_head_is_refused(tiny_model):
    folder = tiny_model("bert")  # saved as the bare body
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        _head().build_model(folder, load_tokenizer(folder))


def test_label_words_per_language_and_clashes(tiny_model):
    tokenizer = load_tokenizer(tiny_model("gemma3"))
    head = _head(label_words={"de": {"neg": "schlecht", "pos": "gut"}, "*": {"neg": "bad", "pos": "good"}})
    def first(word: str) -> int:
        return first_token(tokenizer, word)

    assert head.label_token_ids(tokenizer, "deu") == [first("schlecht"), first("gut")], "ISO 639-3 finds 'de'"
    assert head.label_token_ids(tokenizer, "en") == [first("bad"), first("good")]
    features = head.encode([{**ROWS[0], ROW_LANGUAGE: "de"}, {**ROWS[0], ROW_LANGUAGE: "fr"}], tokenizer, 64)
    assert [f["label_token_ids"] for f in features] == [[first("schlecht"), first("gut")], [first("bad"), first("good")]]
    assert _head().words_for(None) == {"neg": "neg", "pos": "pos"}, "label names by default"
    with pytest.raises(ValueError, match="share their first token"):
        _head(label_words={"neg": "good", "pos": "good"}).label_token_ids(tokenizer, None)


def test_long_texts_are_cut_and_the_answer_cue_stays(tiny_model):
    tokenizer = load_tokenizer(tiny_model("gemma3"))
    head = _head(template="{text}\nVerdict:")
    long = {"text": " ".join(["lovely weather"] * 200), "label": "pos"}
    (feature,) = head.encode([long], tokenizer, 32)
    assert len(feature["input_ids"]) <= 32
    assert tokenizer.decode(feature["input_ids"]).endswith("\nVerdict:")


def test_nli_template_brings_its_label_words():
    from xft_verbalizer import PromptClassification, VerbalizerOptions

    head = PromptClassification(VerbalizerOptions(template="nli", labels=["contradiction", "entailment", "neutral"]))
    assert head.words_for("fr") == {"contradiction": "False", "entailment": "True", "neutral": "Neither"}
    assert "{text_pair}" in head.template_for(has_pair=True)
    with pytest.raises(ValueError, match="named template"):
        VerbalizerOptions(template="nope")


def test_trains_evaluates_and_serves_through_lora(tiny_model, sentiment_data, tmp_path, vpm):
    from xft_core.evaluation import transfer_matrix
    from xft_core.inference import Router
    from xft_core.training import train

    config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification", adapters="per_language",
                         task_options={"template": "{text}\nVerdict:"}, training={"max_steps": 16, "learning_rate": 1e-2})
    run = train(config, pm=vpm, progress=False)
    losses = [r["loss"] for r in run.history if "loss" in r]
    assert losses[-1] < losses[0], "the loss falls"
    folder = run.adapter_dirs["de"]
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "xft.json"]
    matrix = transfer_matrix(run.paths.root, split="dev", pm=vpm, progress=False)
    assert matrix.rows[0].label == "base (no adapter)", "no new weights: the untuned model's row is meaningful"
    router = Router.from_run(run.paths.root, pm=vpm)
    texts = [r["text"] for r in run.dev["de"].rows[:4]] + [r["text"] for r in run.dev["ru"].rows[:4]]
    mixed = router.predict(texts, ["de"] * 4 + ["ru"] * 4)
    alone = router.predict(texts[:4], "de") + router.predict(texts[4:], "ru")
    assert same_labels_but_near_ties(mixed, alone)
    assert max(abs(x - y) for m, a in zip(mixed, alone) for x, y in zip(m["logits"], a["logits"])) < 1e-4
    assert Path(router.registered()["de"]) == folder


# ------------------------------------------------------------------------------------------ template: auto
@pytest.mark.parametrize("labels, expected", [
    (["negative", "neutral", "positive"], "sentiment"), (["neg", "pos"], "sentiment"), (["Positive", "Negative"], "sentiment"),
    (["contradiction", "entailment", "neutral"], "nli"), (["politics", "sports"], None), (["positive", "spam"], None),
    (["neutral", "positive"], None)])
def test_auto_template_follows_what_the_label_names_say(labels, expected):
    from xft_verbalizer import template_for_labels

    assert template_for_labels(labels) == expected


def test_auto_template_is_chosen_on_source_rows_recorded_and_kept_by_the_package():
    from xft_verbalizer import TEMPLATES

    head = _head(labels=["politics", "sports"])
    seen = []

    def predict(rows):
        seen.append(head.template_for(False))
        return [{"label": "sports"}] * len(rows)

    def score(predictions, rows):  # this "model" answers best under the sentiment template
        return {"topic": 0.4, "sentiment": 0.7, "answer": 0.7}[head.template_name]

    note = head.adapt([{"text": "a"}, {"text": "b"}], predict, score)
    assert seen == [TEMPLATES[name][0] for name in ("topic", "sentiment", "answer")], "every candidate, zero-shot"
    assert head.chosen == "sentiment" and "template auto -> sentiment" in note and "topic 40.0" in note, "ties: the earlier"
    assert head.label_info() == {"labels": ["politics", "sports"], "template": "sentiment"}
    loaded = _head(labels=["politics", "sports"])
    loaded.load_label_info(head.label_info())
    assert loaded.template_for(False) == TEMPLATES["sentiment"][0] and loaded.adapt([], predict, score) is None
    old = _head(labels=["politics", "sports"])
    old.load_label_info({"labels": ["politics", "sports"]})  # a package from before: the old "auto" prompt
    assert old.template_for(False) == "{text}\nAnswer:"
    fixed = _head(labels=["politics", "sports"], template="topic")
    assert fixed.adapt([{"text": "a"}], predict, score) is None and "template" not in fixed.label_info()


def test_a_run_with_the_auto_template_records_its_choice_and_serves_with_it(tiny_model, sentiment_data, tmp_path, vpm):
    import json

    from xft_core.inference import Router
    from xft_core.training import train

    config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification",
                         task_options={"labels": ["neg", "pos"]}, training={"max_steps": 2})
    run = train(config, pm=vpm, progress=False)
    manifest = json.loads((run.adapter_dirs["multilingual"] / "xft.json").read_text())
    assert manifest["template"] == "sentiment", "neg/pos are sentiment labels"
    router = Router.from_run(run.paths.root, pm=vpm)
    assert router.base.head.template_for(False) == "{text}\nSentiment:"


def test_the_engine_chooses_an_auto_template_zero_shot_when_label_names_say_nothing(tiny_model, sentiment_data, tmp_path,
                                                                                    vpm, capsys):
    import json

    from xft_core.training import train

    data = tmp_path / "topics"
    data.mkdir()
    for path in sentiment_data.glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        (data / path.name).write_text("".join(json.dumps({**r, "label": {"pos": "sports", "neg": "politics"}[r["label"]]})
                                              + "\n" for r in rows), encoding="utf-8")
    config = tiny_config(tiny_model("gemma3"), data, tmp_path, task="prompt-classification", training={"max_steps": 2})
    run = train(config, pm=vpm, progress=False)
    chosen = json.loads((run.adapter_dirs["multilingual"] / "xft.json").read_text())["template"]
    assert chosen in ("topic", "sentiment", "answer") and run.head.chosen == chosen
    assert f"template auto -> {chosen} (zero-shot on 16 source rows" in capsys.readouterr().err
