"""`prompt-tuning`: a soft prompt (peft) on a frozen base. It trains on prompt-classification (decoders) and
sequence-classification (with its new head), saves peft's own files, evaluates and serves through the transfer
matrix and the router, stacks packages on one base, and refuses what cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine import dataset_loss

from conftest import tiny_config
from xft_core.config import ConfigError, build_options, load_config
from xft_core.evaluation.predict import predict_rows, with_language
from xft_core.hooks import BASE_ADAPTER
from xft_core.models import load_tokenizer

INIT_TEXT = "Is this review good or bad?"
VERDICT = {"template": "{text}\nVerdict:"}
PROMPT = "prompt_encoder.default.embedding.weight"


@pytest.fixture
def ppm(pm):
    import xft_prompt_tuning
    import xft_verbalizer

    pm.register(xft_verbalizer, name="xft_verbalizer")
    pm.register(xft_prompt_tuning, name="xft_prompt_tuning")
    return pm


def _config(model: Path, data: Path, out: Path, *, tokens: int = 8, task: str = "prompt-classification", **over) -> dict:
    over.setdefault("task_options", VERDICT if task == "prompt-classification" else {})
    training = {"max_steps": 30, "learning_rate": 3e-2, **over.pop("training", {})}
    return tiny_config(model, data, out, task=task, strategy="prompt-tuning", training=training,
                       strategy_options={"num_virtual_tokens": tokens, "init_text": INIT_TEXT}, **over)


def _strategy(**options):
    from xft_prompt_tuning import PromptTuning, PromptTuningOptions

    return PromptTuning(PromptTuningOptions(**options))


def _logits(head, model, tokenizer, rows) -> list[list[float]]:
    return [p["logits"] for p in predict_rows(head, model, tokenizer, rows, batch_size=8, max_length=128)]


def _flat(rows) -> list[float]:
    return [x for row in rows for x in row]


def _dev_rows(run, language: str = "de", n: int = 8) -> list[dict]:
    return with_language(run.dev[language].rows[:n], language)


# -------------------------------------------------------------------------------------------- options
def test_options_are_checked_naming_the_option(ppm):
    from xft_core.hooks.manager import collect
    from xft_prompt_tuning import PromptTuningOptions

    with pytest.raises(ValueError, match="num_virtual_tokens must be a positive integer, got 0"):
        PromptTuningOptions(num_virtual_tokens=0)
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PromptTuningOptions(num_virtual_tokens=True)
    with pytest.raises(ValueError, match="init_text must be a string"):
        PromptTuningOptions(init_text=None)
    with pytest.raises(ConfigError, match="num_virtual_tokens"):
        build_options(PromptTuningOptions, {"num_virtual_tokens": -3}, key="strategy_options")
    with pytest.raises(ConfigError, match="strategy_options.init_text"):
        build_options(PromptTuningOptions, {"init_text": ["a"]}, key="strategy_options")
    with pytest.raises(ConfigError, match="Unknown key 'strategy_options.r'"):
        build_options(PromptTuningOptions, {"r": 4}, key="strategy_options")
    spec = collect(ppm, "strategies")["prompt-tuning"].spec
    assert (spec.per_language, spec.stackable, spec.language_adapters) == (False, True, False)
    assert spec.build(PromptTuningOptions()).mixed_batch is False


def test_init_text_starts_from_the_texts_embeddings_and_needs_the_tokenizer(tiny_model, tmp_path):
    import torch

    from xft_verbalizer import PromptClassification, VerbalizerOptions

    folder = tiny_model("gemma3")
    tokenizer = load_tokenizer(folder)
    head = PromptClassification(VerbalizerOptions(labels=["neg", "pos"]))
    model = _strategy(num_virtual_tokens=12, init_text=INIT_TEXT).apply(head.build_model(folder, tokenizer), head, None)
    ids = tokenizer(INIT_TEXT)["input_ids"]
    ids = (ids * 12)[:12]
    with torch.no_grad():
        expected = model.get_input_embeddings()(torch.tensor(ids))
    assert torch.equal(model.prompt_encoder["default"].embedding.weight.detach(), expected)

    bare = head.build_model(folder, tokenizer)
    bare.config._name_or_path = str(tmp_path)  # a folder without a tokenizer
    with pytest.raises(ValueError, match="init_text needs the model's tokenizer.*not loadable from"):
        _strategy(init_text=INIT_TEXT).apply(bare, head, None)
    bare.config._name_or_path = bare.name_or_path = ""  # neither the config nor the model knows its folder
    with pytest.raises(ValueError, match="does not say which folder"):
        _strategy(init_text=INIT_TEXT).apply(bare, head, None)


# -------------------------------------------------------------------------------------- training
def test_trains_prompt_classification_only_the_prompt_changes_and_plain_peft_loads_it(tiny_model, sentiment_data,
                                                                                      tmp_path, ppm):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from xft_core.adapters import attach, load_base
    from xft_core.training import prepare, train
    from xft_core.training.checkpoints import latest_checkpoint
    from xft_verbalizer import VerbalizerModel

    config = _config(tiny_model("gemma3"), sentiment_data, tmp_path)
    before = dataset_loss(prepare(load_config(config), pm=ppm))
    run = train(config, pm=ppm, progress=False)
    assert dataset_loss(run) < before, "the loss over the training data falls"

    model = run.unwrapped_model()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [PROMPT]
    assert run.trainable_parameters == 8 * model.word_embeddings.embedding_dim
    fresh = run.head.build_model(run.model_path, run.tokenizer)
    trained = model.base_model.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in fresh.state_dict().items()), "the base is frozen"
    start = fresh.get_input_embeddings()(torch.tensor((run.tokenizer(INIT_TEXT)["input_ids"] * 8)[:8]))
    assert not torch.allclose(model.prompt_encoder["default"].embedding.weight, start), "the prompt moved"
    assert set(load_file(str(latest_checkpoint(run.paths.checkpoints) / "trainable.safetensors"))) == {PROMPT}

    folder = run.adapter_dirs["multilingual"]
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "xft.json"]
    assert set(load_file(str(folder / "adapter_model.safetensors"))) == {"prompt_embeddings"}
    saved = json.loads((folder / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["task_type"], saved["num_virtual_tokens"]) == ("PROMPT_TUNING", "SEQ_CLS", 8)

    rows = _dev_rows(run, "de", 16)
    base = load_base(folder, ppm)
    ours = _logits(base.head, attach(base, base.model, folder, "de"), base.tokenizer, rows)
    plain = PeftModel.from_pretrained(VerbalizerModel.from_lm(run.model_path, masked=False), str(folder)).eval()
    batches = [base.head.collate(base.head.encode(rows[i : i + 8], base.tokenizer, 128), base.tokenizer) for i in (0, 8)]
    with torch.no_grad():
        theirs = [row for b in batches for row in plain(**{k: v for k, v in b.items() if k != "labels"}).logits.tolist()]
    assert _flat(ours) == pytest.approx(_flat(theirs), abs=1e-5)


def test_trains_on_qwen2_with_prompt_classification(tiny_model, sentiment_data, tmp_path, ppm):
    """Tiny random Qwen2 barely reads its context (a prompt moves the label-word margin by ~0.015), so the check is
    the exact loss over one full-batch language."""
    from xft_core.training import prepare, train

    config = _config(tiny_model("qwen2"), sentiment_data, tmp_path, training={"max_steps": 20, "batch_size": 48,
                                                                             "learning_rate": 1e-2})
    config["data"]["train_languages"] = ["en"]
    before = dataset_loss(prepare(load_config(config), pm=ppm))
    run = train(config, pm=ppm, progress=False)
    assert dataset_loss(run) < before
    assert [n for n, p in run.unwrapped_model().named_parameters() if p.requires_grad] == [PROMPT]


def test_sequence_classification_trains_and_saves_the_new_head(tiny_model, sentiment_data, tmp_path, ppm):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from xft_core.adapters import load_base
    from xft_core.training import prepare, train

    config = _config(tiny_model("bert"), sentiment_data, tmp_path, task="sequence-classification",
                     training={"max_steps": 16, "learning_rate": 1e-2})
    before = dataset_loss(prepare(load_config(config), pm=ppm))
    run = train(config, pm=ppm, progress=False)
    assert dataset_loss(run) < before
    model = run.unwrapped_model()
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["base_model.classifier.modules_to_save.default.bias",
                         "base_model.classifier.modules_to_save.default.weight", PROMPT]
    wrapper = model.base_model.classifier
    assert not torch.equal(wrapper.modules_to_save["default"].weight, wrapper.original_module.weight)
    folder = run.adapter_dirs["multilingual"]
    assert set(load_file(str(folder / "adapter_model.safetensors"))) == {
        "prompt_embeddings", "base_model.classifier.bias", "base_model.classifier.weight"}

    # base_only: the base's own (untrained) classifier and no prompt, exactly
    base = load_base(folder, ppm)
    rows = _dev_rows(run)
    bare = _logits(base.head, base.model, base.tokenizer, rows)
    strategy = _strategy(num_virtual_tokens=8)
    adapted = strategy.attach(base.model, folder, "a", base.head)
    with strategy.base_only(adapted) as inside:
        assert _logits(base.head, inside, base.tokenizer, rows) == bare
    ours = _logits(base.head, adapted, base.tokenizer, rows)
    assert ours != bare
    assert type(strategy.detach(adapted, "a")).__name__ == "BertForSequenceClassification"
    plain = PeftModel.from_pretrained(run.head.build_model(run.model_path, run.tokenizer), str(folder)).eval()
    assert _flat(_logits(base.head, plain, base.tokenizer, rows)) == pytest.approx(_flat(ours), abs=1e-5), \
        "plain peft restores the soft prompt and the trained classifier"


def test_refuses_what_a_soft_prompt_cannot_drive(tiny_model, sentiment_data, tmp_path, ppm):
    from xft_core.testing import build_tiny_model
    from xft_core.training import train
    from xft_tagging import TaggingOptions, TokenClassification
    from xft_verbalizer import PromptClassification, VerbalizerOptions

    config = _config(tiny_model("gemma3"), sentiment_data, tmp_path, task="sequence-classification")
    with pytest.raises(ValueError, match="pooling: mean"):
        train(config, pm=ppm, progress=False)

    folder = build_tiny_model("xlm-roberta", tmp_path / "xlmr-mlm", masked_lm=True)
    head = PromptClassification(VerbalizerOptions(labels=["neg", "pos"]))
    with pytest.raises(ValueError, match="prompt-classification needs a decoder"):
        _strategy().apply(head.build_model(folder, load_tokenizer(folder)), head, None)

    bert = tiny_model("bert")
    tagger = TokenClassification(TaggingOptions(labels=["DET", "NOUN"]))
    with pytest.raises(ValueError, match="token-classification.*Use strategy lora"):
        _strategy().apply(tagger.build_model(bert, load_tokenizer(bert)), tagger, None)

    class Regression:
        model_kind = "regression"

    with pytest.raises(ValueError, match="task head kind 'regression'.*prompt-classification, sequence-classification"):
        _strategy().apply(object(), Regression(), None)


# ------------------------------------------------------------------------------------------ inference
def test_transfer_matrix_router_and_base_only_agree(tiny_model, sentiment_data, tmp_path, ppm):
    from xft_core.evaluation import transfer_matrix
    from xft_core.inference import Router
    from xft_core.training import train

    run = train(_config(tiny_model("gemma3"), sentiment_data, tmp_path, training={"max_steps": 12}), pm=ppm, progress=False)
    matrix = transfer_matrix(run.paths.root, split="dev", pm=ppm, progress=False)
    assert [r.kind for r in matrix.rows] == ["base", "adapter"], "no new weights: the untuned model's row is meaningful"
    base_row, adapter_row = matrix.rows
    router = Router.from_run(run.paths.root, pm=ppm)
    for language in ("de", "en", "ru"):
        rows = run.dev[language].rows
        texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
        served = router.predict(texts, language)
        base = router.predict(texts, language, adapters=BASE_ADAPTER)  # base_only, with the prompt package loaded
        assert {p["adapter"] for p in served} == {"multilingual"}
        for predictions, row in ((served, adapter_row), (base, base_row)):
            accuracy = sum(p["label"] == g for p, g in zip(predictions, gold)) / len(gold)
            assert accuracy == pytest.approx(row.cells[language]["accuracy"])
    texts = [r["text"] for r in run.dev["de"].rows[:4]] + [r["text"] for r in run.dev["ru"].rows[:4]]
    mixed = router.predict(texts, ["de"] * 4 + ["ru"] * 4, adapters=["multilingual"] * 4 + [BASE_ADAPTER] * 4)
    alone = router.predict(texts[:4], "de") + router.predict(texts[4:], "ru", adapters=BASE_ADAPTER)
    assert _flat(m["logits"] for m in mixed) == pytest.approx(_flat(a["logits"] for a in alone), abs=1e-5)


def test_packages_stack_detach_to_the_bare_base_and_a_broken_one_changes_nothing(tiny_model, sentiment_data, tmp_path,
                                                                                 ppm):
    import shutil

    import torch
    from peft import PeftModel

    from xft_core.adapters import load_base
    from xft_core.training import train

    run = train(_config(tiny_model("gemma3"), sentiment_data, tmp_path / "run", training={"max_steps": 4}),
                pm=ppm, progress=False)
    folder = run.adapter_dirs["multilingual"]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])

    base = load_base(folder, ppm)
    head, tokenizer, rows = base.head, base.tokenizer, _dev_rows(run)
    bare = _logits(head, base.model, tokenizer, rows)
    grads = [p.requires_grad for p in base.model.parameters()]
    strategy = _strategy(num_virtual_tokens=8)
    with pytest.raises(ValueError, match="cannot read the prompt-tuning package"):
        strategy.attach(base.model, broken, "x", head)
    assert not isinstance(base.model, PeftModel) and [p.requires_grad for p in base.model.parameters()] == grads
    assert _logits(head, base.model, tokenizer, rows) == bare

    model = strategy.attach(base.model, folder, "a", head)
    adapted = _logits(head, model, tokenizer, rows)
    assert adapted != bare
    assert strategy.attach(model, folder, "b", head) is model
    strategy.activate(model, "b")
    assert model.active_adapter == "b" and _logits(head, model, tokenizer, rows) == adapted
    with pytest.raises(ValueError, match="cannot read"):
        strategy.attach(model, broken, "x", head)
    assert list(model.peft_config) == ["a", "b"] and _logits(head, model, tokenizer, rows) == adapted
    with strategy.base_only(model):
        assert _logits(head, model, tokenizer, rows) == bare
    assert _logits(head, model, tokenizer, rows) == adapted, "base_only leaves the prompt in place afterwards"

    with pytest.raises(NotImplementedError, match="no interpolation toward the base"):
        strategy.scale(model, "a", 0.5)
    with pytest.raises(NotImplementedError, match="mixed_batch is False"):
        strategy.route(model, ["a", "b"])

    model = strategy.detach(model, "a")
    assert isinstance(model, PeftModel) and list(model.peft_config) == ["b"]
    strategy.activate(model, None)  # the single adapter of training: nothing to switch
    model = strategy.detach(model, "b")
    assert model is base.model and not any("prompt" in n for n, _ in model.named_modules())
    with torch.no_grad():
        assert _logits(head, model, tokenizer, rows) == bare


def test_init_from_starts_the_prompt_from_a_saved_package(tiny_model, sentiment_data, tmp_path, ppm):
    import torch
    from safetensors.torch import load_file

    from xft_core.training import prepare, train

    first = train(_config(tiny_model("gemma3"), sentiment_data, tmp_path, name="first", training={"max_steps": 3}),
                  pm=ppm, progress=False)
    folder = first.adapter_dirs["multilingual"]
    run = prepare(load_config(_config(tiny_model("gemma3"), sentiment_data, tmp_path, name="second", init_from=str(folder))),
                  pm=ppm)
    saved = load_file(str(folder / "adapter_model.safetensors"))["prompt_embeddings"]
    assert torch.equal(run.model.prompt_encoder["default"].embedding.weight.detach(), saved)
    longer = _config(tiny_model("gemma3"), sentiment_data, tmp_path, name="third", tokens=12, init_from=str(folder))
    with pytest.raises(ValueError, match="soft prompt of 8 virtual tokens; this run has 12"):
        prepare(load_config(longer), pm=ppm)
