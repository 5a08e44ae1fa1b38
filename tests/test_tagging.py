"""The `token-classification` head: word/sub-word alignment, predictions per word, training on every family."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_engine import RATES, dataset_loss

from conftest import tiny_config
from xft_core.config import load_config
from xft_core.data import DataError
from xft_core.evaluation.predict import predict_rows
from xft_core.training import prepare, train

# tags decided by the word alone, so a tiny model learns them in a few steps; long words split into pieces
LEXICON = {
    "en": {"DET": ["the", "this"], "NOUN": ["newspapers", "mountains", "restaurant", "phenomenon"],
           "VERB": ["reads", "travelled", "serves", "discovered"], "ADJ": ["lovely", "extraordinary", "international"]},
    "de": {"DET": ["der", "das"], "NOUN": ["Straßenbahn", "Brücke", "Frühstück", "Großmutter"],
           "VERB": ["fährt", "erzählt", "bestellen", "blühen"], "ADJ": ["spannende", "wunderschön", "kleine"]},
    "el": {"DET": ["ο", "το"], "NOUN": ["καιρός", "αδελφός", "εφημερίδες", "παράθυρο"],
           "VERB": ["διαβάζει", "ταξιδέψαμε", "κλείστε", "ανακάλυψαν"], "ADJ": ["υπέροχος", "διεθνές", "μικρά"]},
}
TEMPLATES = (("DET", "NOUN", "VERB"), ("DET", "ADJ", "NOUN", "VERB"), ("NOUN", "VERB", "DET", "ADJ", "NOUN"))
PEOPLE = {"en": [["Anna", "Smith"], ["Peter"]], "de": [["Jürgen", "Müller"], ["Heike"]],
          "el": [["Νίκος", "Παπαδόπουλος"], ["Μαρία"]]}
PLACES = {"en": [["New", "York"], ["London"]], "de": [["Bad", "Homburg"], ["München"]], "el": [["Νέα", "Σμύρνη"], ["Αθήνα"]]}
FILLER = {"en": ["lives", "in", "visited", "today"], "de": ["wohnt", "in", "besuchte", "heute"],
          "el": ["μένει", "στην", "επισκέφθηκε", "σήμερα"]}


def pos_rows(language: str, n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        tags = list(TEMPLATES[i % len(TEMPLATES)])
        rows.append({"tokens": [rng.choice(LEXICON[language][t]) for t in tags], "tags": tags})
    return rows


def ner_rows(language: str, n: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for kind, names in (("PER", PEOPLE), ("LOC", PLACES)):
            name = rng.choice(names[language])
            tokens += name
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
            filler = rng.choice(FILLER[language])
            tokens.append(filler)
            tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_tagging_data(folder: Path, make=pos_rows, sizes: dict[str, int] | None = None, dev: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for language, n in (sizes or {"en": 36, "de": 30, "el": 24}).items():
        for split, count in (("train", n), ("dev", dev)):
            lines = [json.dumps(r, ensure_ascii=False) for r in make(language, count, rng)]
            (folder / f"{language}.{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pos_data(tmp_path_factory) -> Path:
    return write_tagging_data(tmp_path_factory.mktemp("pos"))


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> Path:
    return write_tagging_data(tmp_path_factory.mktemp("ner"), make=ner_rows)


@pytest.fixture
def tpm(pm):
    import xft_tagging

    pm.register(xft_tagging, name="xft_tagging")
    return pm


def head_for(**options):
    from xft_tagging import TaggingOptions, TokenClassification

    return TokenClassification(TaggingOptions(**options))


# ------------------------------------------------------------------------------------------ alignment
def test_align_labels_first_subword_and_all_subwords():
    from xft_tagging import align_labels

    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, -100, 6, 7, -100, -100]
    assert align_labels(word_ids, [5, 6, 7], position="last") == [-100, -100, -100, 5, 6, -100, 7, -100]
    assert align_labels(word_ids, [5, 6, 7], all_subwords=True, continuation={5: 1}) == [-100, 5, 1, 1, 6, 7, 7, -100]


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "gemma3"])
def test_encode_labels_the_first_piece_of_words_split_into_several(family, tiny_model):
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model(family))
    head = head_for()
    row = {"tokens": ["Die", "Straßenbahn", "fährt", "."], "tags": ["DET", "NOUN", "VERB", "PUNCT"]}
    head.fit_labels([row])
    (feature,) = head.encode([row], tokenizer, 64)
    _, (word_ids,) = head.tokenize([row], tokenizer, 64)
    assert word_ids.count(1) >= 3, "the test needs a word split into several pieces"
    index = {t: i for i, t in enumerate(head.labels)}
    labelled = [(w, label) for w, label in zip(word_ids, feature["labels"]) if label != -100]
    assert labelled == [(w, index[t]) for w, t in enumerate(row["tags"])]
    for position, (w, label) in enumerate(zip(word_ids, feature["labels"])):
        first = w is not None and word_ids.index(w) == position
        assert (label != -100) == first

    all_head = head_for(label_all_subwords=True)
    all_head.fit_labels([row])
    (feature,) = all_head.encode([row], tokenizer, 64)
    assert [label for w, label in zip(word_ids, feature["labels"]) if w == 1] == [index["NOUN"]] * word_ids.count(1)
    assert all(label == -100 for w, label in zip(word_ids, feature["labels"]) if w is None)


def test_all_subwords_continue_bio_entities_with_i_tags(tiny_model):
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model("bert"))
    head = head_for(label_all_subwords=True)
    row = {"tokens": ["Straßenbahn", "fährt"], "tags": ["B-LOC", "O"]}
    head.fit_labels([row, {"tokens": ["x"], "tags": ["I-LOC"]}])
    (feature,) = head.encode([row], tokenizer, 64)
    _, (word_ids,) = head.tokenize([row], tokenizer, 64)
    pieces = [head.labels[label] for w, label in zip(word_ids, feature["labels"]) if w == 0]
    assert pieces[0] == "B-LOC" and set(pieces[1:]) == {"I-LOC"} and len(pieces) > 1


@pytest.mark.parametrize("family", ["gemma3", "qwen2", "llama"])
def test_byte_level_words_keep_their_leading_space(family, tiny_model):
    """Pre-split words must tokenize as in running text (" die", not "die") on byte-level BPE."""
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model(family))
    words = ["Die", "Straßenbahn", "fährt", "über", "die", "Brücke", "."]
    head = head_for()
    head.fit_labels([{"tokens": words, "tags": ["X"] * len(words)}])
    (feature,) = head.encode([{"tokens": words}], tokenizer, 64)
    assert feature["input_ids"] == tokenizer(" ".join(words))["input_ids"]


def test_slow_tokenizer_is_refused_with_a_clear_message():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        head_for().encode([{"tokens": ["a"], "tags": ["X"]}], Slow(), 16)


def test_collate_pads_labels_with_ignore_index(tiny_model):
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model("bert"))
    head = head_for()
    rows = [{"tokens": ["the"], "tags": ["DET"]}, {"tokens": ["the", "Straßenbahn", "fährt"], "tags": ["DET", "NOUN", "VERB"]}]
    head.fit_labels(rows)
    batch = head.collate(head.encode(rows, tokenizer, 64), tokenizer)
    assert batch["labels"].shape == batch["input_ids"].shape
    short = batch["labels"][0].tolist()
    assert short[int(batch["attention_mask"][0].sum()):] == [-100] * (len(short) - int(batch["attention_mask"][0].sum()))


# ------------------------------------------------------------------------------------------ rows and tags
@pytest.mark.parametrize("row, message", [
    ({"tokens": ["a"]}, "missing field 'tags'"),
    ({"tokens": "a b", "tags": ["X", "X"]}, "must be a list"),
    ({"tokens": [], "tags": []}, "empty list"),
    ({"tokens": ["a", " "], "tags": ["X", "X"]}, "item 1"),
    ({"tokens": ["a", "b"], "tags": ["X"]}, "2 words but 'tags' has 1"),
    ({"tokens": ["a"], "tags": [3]}, "item 0"),
])
def test_validate_row_says_what_is_wrong(row, message):
    assert message in head_for().validate_row(row)


def test_tag_set_scheme_and_metrics():
    head = head_for()
    head.fit_labels([{"tokens": ["a", "b", "c"], "tags": ["B-PER", "I-PER", "O"]}])
    assert head.scheme == "bio" and head.metric_names == ("entity_f1", "token_accuracy")
    assert head.label_info() == {"labels": ["B-PER", "I-PER", "O"], "fallback_tag": "O", "scheme": "bio"}
    assert 'not one of: B-PER, I-PER, O' in head.validate_row({"tokens": ["a"], "tags": ["B-LOC"]})

    pos = head_for()
    pos.fit_labels([{"tokens": ["a", "b", "c"], "tags": ["NOUN", "VERB", "NOUN"]}])
    assert pos.scheme == "plain" and pos.metric_names == ("token_accuracy",)
    assert pos.label_info()["fallback_tag"] == "NOUN"
    restored = head_for()
    restored.load_label_info(pos.label_info())
    assert restored.labels == ["NOUN", "VERB"] and restored.metric_names == ("token_accuracy",)

    assert "not O, B-* or I-*" in head_for(scheme="bio").validate_row({"tokens": ["a"], "tags": ["NOUN"]})
    assert head_for(scheme="plain", labels=["B-X", "O"]).metric_names == ("token_accuracy",)


def test_predictions_give_one_tag_per_word_and_fallback_for_truncated_words(tiny_model):
    from xft_core.models import load_tokenizer

    folder = tiny_model("bert")
    tokenizer = load_tokenizer(folder)
    head = head_for()
    head.fit_labels([{"tokens": ["a", "b", "c"], "tags": ["NOUN", "VERB", "NOUN"]}])
    model = head.build_model(folder, tokenizer)
    assert model.config.num_labels == 2 and type(model).__name__ == "BertForTokenClassification"
    rows = [{"tokens": ["Die", "Straßenbahn", "fährt"]},
            {"tokens": ["Überall", "blühen", "die", "Äpfel", "im", "Frühling", "."] * 4}]
    full = predict_rows(head, model, tokenizer, rows, batch_size=2, max_length=128)
    assert [len(p["tags"]) for p in full] == [3, 28] and full[0]["tokens"] == rows[0]["tokens"]
    assert all(t in head.labels for p in full for t in p["tags"])
    cut = predict_rows(head, model, tokenizer, rows, batch_size=2, max_length=8)
    kept = len(set(w for w in head.tokenize(rows[1:], tokenizer, 8)[1][0] if w is not None))
    # the words kept are tagged from the window the model saw: a bidirectional encoder sees less context there than
    # in the full forward, so compare with the same window (only the kept words, the same batch), not with `full`
    window = predict_rows(head, model, tokenizer, [rows[0], {"tokens": rows[1]["tokens"][:kept]}], batch_size=2,
                          max_length=8)
    assert len(cut[1]["tags"]) == 28 and cut[1]["tags"][:kept] == window[1]["tags"]
    assert cut[1]["tags"][kept:] == ["NOUN"] * (28 - kept), "words cut off get the most frequent training tag"
    last = head_for(label_subword="last")
    last.load_label_info(head.label_info())
    assert [len(p["tags"]) for p in predict_rows(last, model, tokenizer, rows, batch_size=2, max_length=128)] == [3, 28]


# ------------------------------------------------------------------------------------------ training
def tagging_config(model: Path, data: Path, out: Path, strategy: str, **over) -> dict:
    training = {"max_steps": 24, **over.pop("training", {})}
    config = tiny_config(model, data, out, task="token-classification", sampler="uniform", training=training, **over)
    config["strategy"] = strategy
    if strategy == "full":
        config["strategy_options"] = {}
    config["training"]["learning_rate"] = RATES[model.name][strategy == "lora"]
    return config


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "gemma3", "qwen2"])
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_token_classification_trains_and_the_loss_falls(family, strategy, tiny_model, pos_data, tmp_path, tpm):
    config = tagging_config(tiny_model(family), pos_data, tmp_path, strategy)
    before = dataset_loss(prepare(load_config(config), pm=tpm))
    run = train(config, pm=tpm, progress=False)
    after = dataset_loss(run)
    assert after < before - 0.05, f"loss did not fall: {before:.4f} -> {after:.4f}"
    assert set(run.metrics) == {"en", "de", "el"} and all(set(m) == {"token_accuracy"} for m in run.metrics.values())
    manifest = json.loads((run.adapter_dirs[run.adapter_names[0]] / "xft.json").read_text())
    assert manifest["labels"] == ["ADJ", "DET", "NOUN", "VERB"] and manifest["task"] == "token-classification"


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "gemma3", "qwen2"])
def test_per_language_lora_adapters_train_and_mix_in_one_batch(family, tiny_model, pos_data, tmp_path, tpm):
    config = tagging_config(tiny_model(family), pos_data, tmp_path, "lora", adapters="per_language")
    config["sampler"] = "round_robin"
    before = dataset_loss(prepare(load_config(config), pm=tpm))
    run = train(config, pm=tpm, progress=False)
    assert dataset_loss(run) < before - 0.05
    assert sorted(run.adapter_dirs) == ["de", "el", "en"]

    model = run.accelerator.unwrap_model(run.model)
    rows = [r for lang in ("en", "de", "el") for r in run.dev[lang].rows[:3]]
    names = [lang for lang in ("en", "de", "el") for _ in range(3)]
    mixed = predict_rows(run.head, model, run.tokenizer, rows, batch_size=9, max_length=64, route={"adapter_names": names})
    for language in ("en", "de", "el"):
        run.strategy.activate(model, language)
        alone = predict_rows(run.head, model, run.tokenizer, rows, batch_size=9, max_length=64)
        assert [p for p, n in zip(mixed, names) if n == language] == [p for p, n in zip(alone, names) if n == language]


def test_bio_tags_report_entity_f1(tiny_model, ner_data, tmp_path, tpm):
    config = tagging_config(tiny_model("bert"), ner_data, tmp_path, "full", training={"max_steps": 30})
    run = train(config, pm=tpm, progress=False)
    assert run.head.metric_names == ("entity_f1", "token_accuracy")
    for metrics in run.metrics.values():
        assert set(metrics) == {"entity_f1", "token_accuracy"} and 0 <= metrics["entity_f1"] <= 1
    assert max(m["token_accuracy"] for m in run.metrics.values()) > 0.5


def test_dev_tag_outside_the_training_tag_set_names_file_and_line(tiny_model, pos_data, tmp_path, tpm):
    data = tmp_path / "data"
    data.mkdir()
    (data / "en.train.jsonl").write_text((pos_data / "en.train.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (data / "en.dev.jsonl").write_text('{"tokens": ["the", "x"], "tags": ["DET", "NOUN"]}\n'
                                       '{"tokens": ["a"], "tags": ["PROPN"]}\n')
    with pytest.raises(DataError, match=r"en.dev.jsonl line 2: .*PROPN.*not one of: ADJ, DET, NOUN, VERB"):
        prepare(load_config(tagging_config(tiny_model("bert"), data, tmp_path, "lora")), pm=tpm)


def test_saved_adapter_reloads_onto_a_fresh_base_and_predicts_the_same(tiny_model, pos_data, tmp_path, tpm):
    from xft_core.adapters import attach, load_base

    run = train(tagging_config(tiny_model("gemma3"), pos_data, tmp_path, "lora"), pm=tpm, progress=False)
    model = run.accelerator.unwrap_model(run.model)
    rows = run.dev["de"].rows
    expected = predict_rows(run.head, model, run.tokenizer, rows, batch_size=8, max_length=64)
    folder = run.adapter_dirs[run.adapter_names[0]]
    base = load_base(folder, tpm)
    loaded = attach(base, base.model, folder, "tagger")
    assert predict_rows(base.head, loaded, base.tokenizer, rows, batch_size=8, max_length=64) == expected
