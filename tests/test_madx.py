"""MAD-X with LoRA (strategy `madx`): language adapters trained with the `language-modeling` head, a task adapter
stacked on them; stacked adapters equal the same adapters combined by hand with peft, and swapping the language
adapter changes only the language part (router, transfer matrix)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from conftest import same_labels_but_near_ties, tiny_config
from xft_core.config import build_options
from xft_core.evaluation.predict import predict_rows, score, with_language
from xft_core.models import load_tokenizer

LANGUAGES = ("de", "en", "ru")
TEMPLATE = "{text}\nVerdict:"


def _manager():
    import xft_classification
    import xft_full
    import xft_generation
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    import xft_verbalizer
    from xft_core.hooks.manager import make_plugin_manager
    from xft_lora import madx

    manager = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_full, xft_samplers, xft_classification, xft_metrics, xft_sources, xft_generation,
                   xft_verbalizer, madx):
        manager.register(module, name=module.__name__)
    return manager


@pytest.fixture
def mpm():
    return _manager()


@pytest.fixture(scope="module")
def runs(tiny_model, sentiment_data, tmp_path_factory):
    """Language adapters for de, en, ru (language-modeling, lora, per_language) and a madx task run on English."""
    from xft_core.training import train

    out = tmp_path_factory.mktemp("madx")
    model = tiny_model("gemma3")
    languages = train(tiny_config(model, sentiment_data, out, name="lang", task="language-modeling", adapters="per_language",
                                  training={"max_steps": 24, "learning_rate": 2e-2}), pm=_manager(), progress=False)
    config = tiny_config(model, sentiment_data, out, name="task", task="prompt-classification", strategy="madx",
                         strategy_options={"r": 4, "alpha": 8, "language_adapters": str(languages.paths.root)},
                         task_options={"template": TEMPLATE}, training={"max_steps": 16, "learning_rate": 1e-2})
    config["data"].update(train_languages=["en"], eval_languages=list(LANGUAGES))
    task = train(config, pm=_manager(), progress=False)
    return {"lang": languages, "task": task, "model": model, "package": task.adapter_dirs["en"]}


def _rows(run, language, n=6):
    return [{"text": r["text"], "label": r["label"]} for r in run.dev[language].rows[:n]]


def _head(**options):
    from xft_verbalizer import PromptClassification, VerbalizerOptions

    head = PromptClassification(build_options(VerbalizerOptions, {"template": TEMPLATE, **options}, key="task_options"))
    head.load_label_info({"labels": ["neg", "pos"]})
    return head


def _by_hand(model_folder, package, languages):
    """The task adapter and language adapters loaded with nothing but peft."""
    from peft import PeftModel

    head = _head()
    tokenizer = load_tokenizer(model_folder)
    model = PeftModel.from_pretrained(head.build_model(model_folder, tokenizer), str(package), adapter_name="task")
    for language in languages:
        model.load_adapter(str(package / "languages" / language), adapter_name=language)
    return head, tokenizer, model.eval()


def _by_hand_predictions(head, tokenizer, model, language, rows):
    model.base_model.set_adapter([language, "task"])
    return predict_rows(head, model, tokenizer, with_language(rows, language), batch_size=8, max_length=64)


def _largest_gap(a, b):
    return max(abs(x - y) for p, q in zip(a, b) for x, y in zip(p["logits"], q["logits"]))


def _language_tensors(package):
    """An original language adapter's tensors, keyed by the task model's paths (prompt-classification nests the
    language model under `lm.`)."""
    from safetensors.torch import load_file

    return {k.replace("base_model.model.", "base_model.model.lm.", 1): v
            for k, v in load_file(str(package / "adapter_model.safetensors")).items()}


# ------------------------------------------------------------------------------------------ language-modeling
def test_language_modeling_head_labels_masks_and_perplexity(tiny_model, tmp_path):
    import torch

    from xft_core.testing import build_tiny_model
    from xft_generation.language_modeling import LanguageModeling, LanguageModelingOptions, perplexity

    decoder = tiny_model("gemma3")
    tokenizer = load_tokenizer(decoder)
    head = LanguageModeling(LanguageModelingOptions())
    rows = [{"text": "phone good", "label": "pos"}, {"text": "The weather is lovely today."}]
    assert head.validate_row(rows[1]) is None and "empty" in head.validate_row({"text": " "})
    batch = head.collate(head.encode(rows, tokenizer, 32), tokenizer)
    assert batch["input_ids"][0, len(head.encode(rows[:1], tokenizer, 32)[0]["input_ids"]) - 1] == tokenizer.eos_token_id
    assert ((batch["labels"] == -100) == (batch["attention_mask"] == 0)).all(), "a decoder learns every real token"
    model = head.build_model(decoder, tokenizer).eval()
    assert head.model_kind == "causal-lm"
    predictions = predict_rows(head, model, tokenizer, rows, batch_size=2, max_length=32)
    with torch.no_grad():  # transformers' own loss over the row alone is the row's mean token loss
        alone = model(**{k: v[:1, : batch["attention_mask"][0].sum()] for k, v in batch.items()}).loss
    assert predictions[0]["loss"] == pytest.approx(float(alone), abs=1e-5)
    pairs = [(p["loss"], p["tokens"]) for p in predictions]
    expected = math.exp(sum(loss * n for loss, n in pairs) / sum(n for _, n in pairs))
    assert perplexity(*head.metric_inputs(predictions, rows)) == pytest.approx(expected)

    encoder = build_tiny_model("xlm-roberta", tmp_path / "xlmr-mlm", masked_lm=True)
    etok = load_tokenizer(encoder)
    masked = LanguageModeling(LanguageModelingOptions())
    masked.build_model(encoder, etok)
    assert masked.masked and masked.model_kind == "masked-lm"
    many = [{"text": t} for t in ["The weather is lovely today and the children play outside"] * 8]
    first = masked.collate(masked.encode(many, etok, 64), etok)
    again = masked.collate(masked.encode(many, etok, 64), etok)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    chosen = first["labels"] != -100
    assert chosen.any(dim=1).all(), "every row has a masked token"
    original = torch.tensor([f["input_ids"] for f in masked.encode(many, etok, 64)])
    assert not (chosen & torch.isin(original, torch.tensor(etok.all_special_ids))).any(), "special tokens stay"
    assert 0.05 < chosen.float().mean() < 0.3
    assert (first["input_ids"][chosen] == etok.mask_token_id).float().mean() > 0.5
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        LanguageModeling(LanguageModelingOptions()).build_model(tiny_model("bert"), load_tokenizer(tiny_model("bert")))


# ------------------------------------------------------------------------------------------------ training
def test_language_adapters_train_with_language_modeling(runs, mpm):
    from xft_core.evaluation import transfer_matrix

    history = [r["loss"] for r in runs["lang"].history if "loss" in r]
    assert sum(history[-6:]) / 6 < sum(history[:6]) / 6, f"the LM loss falls: {history}"
    # a tiny random model's tied LM head keeps logits small, so the loss cannot fall far: compare with the base
    matrix = transfer_matrix(runs["lang"].paths.root, split="train", pm=mpm, progress=False, include_base=True)
    base, own = matrix.rows[0].cells, matrix.rows[1].cells
    assert matrix.greater_is_better == {"perplexity": False}
    assert all(own[lang]["perplexity"] < base[lang]["perplexity"] for lang in LANGUAGES), (base, own)
    for language in LANGUAGES:
        folder = runs["lang"].adapter_dirs[language]
        assert json.loads((folder / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
        assert json.loads((folder / "xft.json").read_text())["languages"] == [language]
    assert "perplexity" in runs["lang"].metrics["de"]


def test_the_task_run_trains_only_the_task_adapter_and_keeps_language_adapters_bit_identical(runs):
    import torch
    from safetensors.torch import load_file

    run, package = runs["task"], runs["package"]
    model = run.unwrapped_model()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and ".task." in n for n in trainable), "only the task adapter trains"
    assert run.trainable_parameters == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sorted(p.name for p in package.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "languages",
                                                         "madx.json", "xft.json"]
    assert json.loads((package / "madx.json").read_text())["languages"] == {lang: f"languages/{lang}" for lang in LANGUAGES}
    task = load_file(str(package / "adapter_model.safetensors"))
    assert all(".lora_" in k for k in task) and not any("lang" in k for k in task)
    assert any(float(v.abs().sum()) > 0 for k, v in task.items() if "lora_B" in k), "the task adapter learned"
    state = model.state_dict()
    for language in LANGUAGES:
        original = _language_tensors(runs["lang"].adapter_dirs[language])
        copied = load_file(str(package / "languages" / language / "adapter_model.safetensors"))
        assert copied.keys() == original.keys()
        assert all(torch.equal(copied[k], original[k]) for k in original), f"{language}: saved bit-identical"
        slot = f"task__lang_{language}"
        in_model = {k: v for k, v in state.items() if f".{slot}." in k}
        assert len(in_model) == len(original)
        for key, value in in_model.items():
            assert torch.equal(value, original[key.replace(f".{slot}.", ".")]), f"{key} unchanged by training"


# ------------------------------------------------------------------------------------- stacked equals by hand
def test_stacked_adapters_equal_the_same_adapters_combined_by_hand_with_peft(runs, mpm):
    from xft_core.inference import Router

    head, tokenizer, by_hand = _by_hand(runs["model"], runs["package"], LANGUAGES)
    router = Router.from_run(runs["task"].paths.root, pm=mpm, fallback="en")
    for language in LANGUAGES:
        rows = _rows(runs["task"], language)
        served = router.predict([dict(r) for r in rows], language)
        expected = _by_hand_predictions(head, tokenizer, by_hand, language, rows)
        assert _largest_gap(served, expected) < 1e-5, language
        assert same_labels_but_near_ties(served, expected), language


def test_swapping_the_language_adapter_changes_only_the_language_part(runs):
    import torch
    from peft.tuners.lora import LoraLayer

    from xft_lora.madx import Madx, MadxOptions

    head = _head()
    tokenizer = load_tokenizer(runs["model"])
    strategy = Madx(MadxOptions(language_adapters=str(runs["lang"].paths.root)))
    model = strategy.attach(head.build_model(runs["model"], tokenizer), runs["package"], "x", head).eval()
    originals = {lang: _language_tensors(runs["lang"].adapter_dirs[lang]) for lang in ("de", "ru")}
    configs = {lang: json.loads((runs["lang"].adapter_dirs[lang] / "adapter_config.json").read_text()) for lang in originals}
    torch.manual_seed(0)
    checked = 0
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer) or "x" not in layer.lora_A:
            continue
        x = torch.randn(3, layer.in_features)
        key = f"base_model.model.{name.removeprefix('base_model.model.')}"
        with torch.no_grad():
            task = layer.lora_B["x"](layer.lora_A["x"](x)) * layer.scaling["x"]
            outputs = {}
            for language in originals:
                strategy.activate(model, "x", language)
                a, b = originals[language][f"{key}.lora_A.weight"], originals[language][f"{key}.lora_B.weight"]
                own = x @ a.T @ b.T * configs[language]["lora_alpha"] / configs[language]["r"]  # from the package alone
                outputs[language] = layer(x)
                assert torch.allclose(outputs[language], layer.base_layer(x) + own + task, atol=1e-6), name
                assert torch.allclose(outputs[language] - own, layer.base_layer(x) + task, atol=1e-6), "same task part"
        checked += 1
    assert checked >= 4
    rows = _rows(runs["task"], "de")
    strategy.activate(model, "x", "de")
    under_de = predict_rows(head, model, tokenizer, with_language(rows, "de"), batch_size=8, max_length=64)
    strategy.activate(model, "x", "ru")
    under_ru = predict_rows(head, model, tokenizer, with_language(rows, "de"), batch_size=8, max_length=64)
    assert _largest_gap(under_de, under_ru) > 1e-4, "the language adapter matters"
    strategy.scale(model, "x", 0.0)  # WiSE-FT at 0: neither the task nor the language adapter changes anything
    scaled = predict_rows(head, model, tokenizer, with_language(rows, "de"), batch_size=8, max_length=64)
    with strategy.base_only(model):
        base = predict_rows(head, model, tokenizer, with_language(rows, "de"), batch_size=8, max_length=64)
    assert _largest_gap(scaled, base) < 1e-6
    assert strategy.detach(model, "x").__class__.__name__ == "VerbalizerModel", "detach leaves the bare base"


# ------------------------------------------------------------------------------------- router, transfer matrix
def test_the_router_serves_a_mixed_batch_grouped_by_language(runs, mpm):
    from xft_core.inference import Router

    router = Router.from_run(runs["task"].paths.root, pm=mpm, fallback="en")
    rows = {lang: _rows(runs["task"], lang, 3) for lang in LANGUAGES}
    texts = [r["text"] for lang in LANGUAGES for r in rows[lang]]
    languages = [lang for lang in LANGUAGES for _ in rows[lang]]
    router.load("en")
    activated, activate = [], router.strategy.activate

    def spy(model, adapter, language=None):
        activated.append(language)
        activate(model, adapter, language)

    router.strategy.activate = spy
    order = sorted(range(len(texts)), key=lambda i: (i % 3, i))  # de, en, ru, de, en, ru, ...
    answers = router.predict([texts[i] for i in order], [languages[i] for i in order])
    mixed = [answers[order.index(i)] for i in range(len(texts))]
    assert sorted(activated) == sorted(LANGUAGES), "one group, one activation, per language"
    router.strategy.activate = activate
    alone = [p for lang in LANGUAGES for p in router.predict([r["text"] for r in rows[lang]], lang)]
    assert _largest_gap(mixed, alone) < 1e-6
    head, tokenizer, by_hand = _by_hand(runs["model"], runs["package"], LANGUAGES)
    expected = [p for lang in LANGUAGES for p in _by_hand_predictions(head, tokenizer, by_hand, lang, rows[lang])]
    assert _largest_gap(mixed, expected) < 1e-5
    assert {m["adapter"] for m in mixed} == {"en"} and [m["language"] for m in mixed] == languages
    router.register("again", runs["package"])  # a second stack on the same model, then the first one goes
    assert _largest_gap(router.predict(texts, languages, adapters=["again"] * len(texts)), expected) < 1e-5
    router.fallback = "again"  # the fallback itself cannot be unregistered
    router.unregister("en")
    assert _largest_gap(router.predict(texts, languages, adapters=["again"] * len(texts)), expected) < 1e-5
    assert not [n for n in router.model.peft_config if n.startswith("en__")], "every adapter of the stack is gone"


def test_the_transfer_matrix_runs_each_language_under_its_own_language_adapter(runs, mpm, monkeypatch):
    from xft_core.evaluation import transfer_matrix
    from xft_verbalizer import PromptClassification

    seen = []
    original = PromptClassification.predict_batch

    def spy(self, model, tokenizer, rows, **kwargs):
        seen.append(({r["__language__"] for r in rows}, list(model.base_model.active_adapters)))
        return original(self, model, tokenizer, rows, **kwargs)

    monkeypatch.setattr(PromptClassification, "predict_batch", spy)
    matrix = transfer_matrix(runs["task"].paths.root, split="dev", pm=mpm, progress=False, include_base=False)
    monkeypatch.undo()
    assert {(next(iter(languages)), tuple(active)) for languages, active in seen} == {
        (lang, (f"xft-eval__lang_{lang}", "xft-eval")) for lang in LANGUAGES}
    head, tokenizer, by_hand = _by_hand(runs["model"], runs["package"], LANGUAGES)
    (row,) = matrix.rows
    for language in LANGUAGES:
        rows = runs["task"].dev[language].rows
        expected = score(head, mpm, _by_hand_predictions(head, tokenizer, by_hand, language, rows), rows)
        assert row.cells[language] == pytest.approx(expected), language


def test_encoders_stack_masked_lm_language_adapters_under_a_classifier(tmp_path, sentiment_data, mpm):
    """XLM-R: language adapters learn masked LM (their LoRA on the MLM head is left out), the task adapter and
    the new classifier train on top, and the router equals plain peft."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from xft_classification import ClassificationOptions, SequenceClassification
    from xft_core.inference import Router
    from xft_core.testing import build_tiny_model
    from xft_core.training import train

    model = build_tiny_model("xlm-roberta", tmp_path / "xlmr-mlm", masked_lm=True)
    config = tiny_config(model, sentiment_data, tmp_path, name="lang", task="language-modeling", adapters="per_language",
                         training={"max_steps": 4})
    config["data"].update(train_languages=["de", "en"])
    languages = train(config, pm=mpm, progress=False)
    config = tiny_config(model, sentiment_data, tmp_path, name="task", strategy="madx", training={"max_steps": 4},
                         strategy_options={"r": 4, "alpha": 8, "language_adapters": str(languages.paths.root / "adapters"),
                                           "source_language": "en"})
    config["data"].update(train_languages=["en"], eval_languages=["de", "en"])
    with pytest.warns(UserWarning, match="LoRA on the language model's own head .*lm_head.dense.* is left out"):
        run = train(config, pm=mpm, progress=False)
    package = run.adapter_dirs["en"]
    assert json.loads((package / "madx.json").read_text())["source_language"] == "en"
    trainable = [n for n, p in run.unwrapped_model().named_parameters() if p.requires_grad]
    assert all(".task." in n for n in trainable) and any(".modules_to_save.task." in n for n in trainable), "task + head"
    original = load_file(str(languages.adapter_dirs["de"] / "adapter_model.safetensors"))
    copied = load_file(str(package / "languages" / "de" / "adapter_model.safetensors"))
    on_head = [k for k in original if ".lm_head." in k]
    assert on_head and len(copied) == len(original) - len(on_head) and not any("lm_head" in k for k in copied)
    head = SequenceClassification(ClassificationOptions())
    head.load_label_info({"labels": ["neg", "pos"]})
    tokenizer = load_tokenizer(model)
    # language adapter first: peft's sequence-classifier class (from the task adapter's SEQ_CLS) would give an adapter
    # loaded after it a copy of the classifier, which the language adapter's file does not hold
    by_hand = PeftModel.from_pretrained(head.build_model(model, tokenizer), str(package / "languages" / "de"), adapter_name="de")
    by_hand.load_adapter(str(package), adapter_name="task")
    by_hand.base_model.set_adapter(["de", "task"])
    rows = [{"text": r["text"]} for r in run.dev["de"].rows[:6]]
    expected = predict_rows(head, by_hand.eval(), tokenizer, rows, batch_size=8, max_length=64)
    served = Router.from_run(run.paths.root, pm=mpm, fallback="en").predict([r["text"] for r in rows], "de")
    assert _largest_gap(served, expected) < 1e-5


# ------------------------------------------------------------------------------------------ fallback, errors
def test_a_language_without_an_adapter_falls_back_to_the_source_language_once(runs):
    from xft_lora.madx import Madx, MadxOptions

    head = _head()
    strategy = Madx(MadxOptions(language_adapters=str(runs["lang"].paths.root)))
    model = strategy.attach(head.build_model(runs["model"], load_tokenizer(runs["model"])), runs["package"], "x", head)
    with pytest.warns(UserWarning, match="no language adapter for 'fr'.*'en'"):
        strategy.activate(model, "x", "fr")
    assert model.base_model.active_adapters == ["x__lang_en", "x"], "the run's one training language is the source"
    strategy.activate(model, "x", "deu")
    assert model.base_model.active_adapters == ["x__lang_de", "x"], "codes are compared as languages"
    assert strategy.served_languages(model, "x") == list(LANGUAGES)


def test_misfitting_language_adapters_and_an_unknown_source_are_clear_errors(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    from xft_lora.madx import Madx, MadxOptions

    head = _head()
    tokenizer = load_tokenizer(runs["model"])
    root = runs["lang"].paths.root

    def apply(**options):
        return Madx(MadxOptions(r=4, alpha=8, **options)).apply(head.build_model(runs["model"], tokenizer), head, None)

    with pytest.raises(ValueError, match="source_language 'fr' has no language adapter"):
        apply(language_adapters=str(root), source_language="fr")
    strategy = Madx(MadxOptions(language_adapters=str(root)))
    model = strategy.apply(head.build_model(runs["model"], tokenizer), head, None)
    with pytest.raises(ValueError, match="no source language.*source_language"):
        strategy.activate(model, None, "fr")
    broken = tmp_path / "broken" / "adapters"
    shutil.copytree(runs["lang"].adapter_dirs["de"], broken / "de")
    weights = load_file(str(broken / "de" / "adapter_model.safetensors"))
    key = next(iter(weights))
    weights[key.replace("layers.0.", "layers.7.", 1)] = weights.pop(key)
    save_file(weights, str(broken / "de" / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="maps to none of the task model's modules"):
        apply(language_adapters=str(broken.parent))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        apply(language_adapters=str(tmp_path / "nowhere"))
    other = tmp_path / "other" / "adapters"
    shutil.copytree(runs["lang"].adapter_dirs["de"], other / "de")
    manifest = json.loads((other / "de" / "xft.json").read_text())
    (other / "de" / "xft.json").write_text(json.dumps({**manifest, "base_fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="'de' language adapter .* was trained on another base model"):
        apply(language_adapters=str(other.parent))
