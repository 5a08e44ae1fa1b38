"""`MeanPoolClassifier` (sequence-classification with `pooling: mean`): pooling, loss, LoRA, mixed batches, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine import RATES, dataset_loss

from conftest import tiny_config, write_sentiment_data
from xft_core.config import load_config
from xft_core.training import prepare, train


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("easy-pool"), vocabulary=2)


def mean_config(model: Path, data: Path, out: Path, strategy: str = "lora", **over) -> dict:
    config = tiny_config(model, data, out, task_options={"pooling": "mean"}, training={"max_steps": 24}, **over)
    config["strategy"] = strategy
    if strategy == "full":
        config["strategy_options"] = {}
    config["training"]["learning_rate"] = RATES[model.name][strategy == "lora"]
    return config


def build(folder: Path, num_labels: int = 2):
    from transformers import AutoConfig

    from xft_classification.pooling import MeanPoolClassifier

    return MeanPoolClassifier.from_backbone(folder, AutoConfig.from_pretrained(folder, num_labels=num_labels)).eval()


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_mean_over_non_pad_tokens_ignores_padding_and_keeps_the_backbone(family, tiny_model):
    import torch
    from transformers import AutoModel

    from xft_core.models import load_tokenizer

    folder = tiny_model(family)
    model, tokenizer = build(folder, 3), load_tokenizer(folder)
    reference = AutoModel.from_pretrained(folder).state_dict()
    assert all(torch.equal(reference[k], v) for k, v in model.backbone.state_dict().items())
    texts = ["kurz", "Die Straßenbahn fährt über die Brücke und weiter."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert int(batch["attention_mask"][0].sum()) < batch["attention_mask"].shape[1], "the test needs padding"
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        out = model(**batch, labels=labels)
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
        states = model.backbone(**tokenizer(texts[:1], return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(out.logits[:1], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone, model.score(states.mean(dim=1)), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


@pytest.mark.parametrize("family", ["bert", "gemma3"])
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_mean_pooling_trains_and_the_loss_falls(family, strategy, tiny_model, easy_data, tmp_path, pm):
    from xft_classification.pooling import MeanPoolClassifier

    config = mean_config(tiny_model(family), easy_data, tmp_path, strategy)
    start = prepare(load_config(config), pm=pm)
    before = dataset_loss(start)
    run = train(config, pm=pm, progress=False)
    assert dataset_loss(run) < before - 0.02
    model = run.accelerator.unwrap_model(run.model)
    assert isinstance(model.get_base_model() if strategy == "lora" else model, MeanPoolClassifier)
    assert run.head.head_modules(model) == ["score"]
    if strategy == "lora":
        assert set(model.peft_config["default"].modules_to_save) == {"score", "classifier"}  # peft adds classifier
        assert any(".score.modules_to_save.default." in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_mixed_batch_gives_each_row_its_own_adapter_and_saved_adapters_reload(family, tiny_model, easy_data, tmp_path, pm):
    import torch
    from peft import PeftModel

    from xft_core.adapters import attach, load_base

    config = mean_config(tiny_model(family), easy_data, tmp_path, "lora", adapters="per_language", sampler="round_robin")
    run = train(config, pm=pm, progress=False)
    model = run.accelerator.unwrap_model(run.model).eval()
    languages = ["en", "de", "ru", "de", "en", "ru"]
    rows = [run.dev[lang].rows[i] for i, lang in enumerate(languages)]
    batch = run.head.collate(run.head.encode(rows, run.tokenizer, 64), run.tokenizer)
    batch.pop("labels")
    with torch.no_grad():
        mixed = model(**batch, adapter_names=languages).logits
        alone = {}
        for language in ("en", "de", "ru"):
            run.strategy.activate(model, language)
            alone[language] = model(**batch).logits
    for i, language in enumerate(languages):
        torch.testing.assert_close(mixed[i], alone[language][i], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone["en"], alone["de"]), "adapters trained on different languages should differ"

    folder = run.adapter_dirs["de"]
    manifest = json.loads((folder / "xft.json").read_text())
    assert manifest["task_options"] == {"pooling": "mean"}
    base = load_base(folder, pm)  # xft: the manifest rebuilds MeanPoolClassifier before peft loads the adapter
    loaded = attach(base, base.model, folder, "de").eval()
    plain = PeftModel.from_pretrained(build(run.model_path, len(manifest["labels"])), str(folder)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, alone["de"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(plain(**batch).logits, alone["de"], atol=1e-5, rtol=1e-4)
