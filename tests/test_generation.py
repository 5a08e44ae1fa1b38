"""Generation heads `causal-lm` and `seq2seq`: label masking, prompts, training through the engine, decoding,
mixed-adapter generation, on tiny offline Gemma 3, Qwen2 and T5 models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine import dataset_loss

from conftest import tiny_config
from xft_core.config import load_config
from xft_core.evaluation.predict import predict_rows
from xft_core.hooks import ROW_LANGUAGE
from xft_core.training import evaluate_dev, prepare, train

HEADS = [("gemma3", "causal-lm"), ("qwen2", "causal-lm"), ("t5", "seq2seq")]
# a few short sentences per language that every tiny tokenizer knows (xft_core.testing.DEFAULT_TEXTS)
SENTENCES = {
    "de": ["Guten Morgen.", "Das Wetter ist schön.", "Kleine Modelle."],
    "es": ["Buenos días.", "¡Qué día más bonito!", "Mi corazón."],
    "ru": ["Доброе утро.", "Москва.", "Дети играли."],
}
# (learning rate full, lora) that teach a tiny random model to copy its few sentences within a test's steps
RATES = {"gemma3": (1e-2, 3e-2), "qwen2": (1e-2, 3e-2), "t5": (1e-2, 3e-2)}
DECODER_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_copy_data(folder: Path, languages=("de", "es", "ru")) -> Path:
    """<lang>.train.jsonl and <lang>.dev.jsonl holding the same copy pairs (target == source)."""
    folder.mkdir(parents=True, exist_ok=True)
    for language in languages:
        for split in ("train", "dev"):
            lines = [json.dumps({"source": s, "target": s}, ensure_ascii=False) for s in SENTENCES[language]]
            (folder / f"{language}.{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def copy_data(tmp_path_factory) -> Path:
    return write_copy_data(tmp_path_factory.mktemp("copy"))


@pytest.fixture
def gpm(pm):
    import xft_generation

    pm.register(xft_generation, name="xft_generation")
    return pm


def head_of(name: str, **options):
    from xft_generation import CausalLM, GenerationOptions, Seq2Seq

    return {"causal-lm": CausalLM, "seq2seq": Seq2Seq}[name](GenerationOptions(**options))


def generation_config(model, data, out, task, strategy="lora", **over) -> dict:
    family = Path(model).name
    config = tiny_config(model, data, out, task=task, sampler="round_robin", **over)
    config["task_options"] = {"template": "plain", "max_new_tokens": 24, **config.get("task_options", {})}
    config["training"].update(batch_size=4, max_length=64, eval_batch_size=8)
    config["strategy"] = strategy
    config["strategy_options"] = {"r": 8, "alpha": 16} if strategy == "lora" else {}
    config["training"]["learning_rate"] = RATES[family][strategy == "lora"]
    return config


# ----------------------------------------------------------------------------------------- prompts
def test_template_fills_language_names_from_codes():
    from xft_generation import language_name

    head = head_of("causal-lm")
    row = {"source": "Guten Morgen.", "target": "Good morning."}
    assert head.prompt({**row, ROW_LANGUAGE: "deu"}) == "Translate from German to English.\nGerman: Guten Morgen.\nEnglish:"
    assert head.prompt({**row, ROW_LANGUAGE: "de"}) == head.prompt({**row, ROW_LANGUAGE: "ger"})
    assert "from Spanish to French" in head_of("causal-lm", target_language="fra").prompt({**row, ROW_LANGUAGE: "es"})
    assert head_of("seq2seq").prompt({**row, ROW_LANGUAGE: "cmn"}) == "translate Chinese to English: Guten Morgen."
    assert [language_name(c) for c in ("pt-BR", "zh_Hant", "zsm", "swh", "xx-unknown")] == [
        "Portuguese", "Chinese", "Malay", "Swahili", "xx-unknown"]
    named = head_of("causal-lm", language_names={"gsw": "Swiss German (Zurich)"}, template="{source_language}|{source}|{note}")
    assert named.prompt({**row, "note": "formal", ROW_LANGUAGE: "gsw"}) == "Swiss German (Zurich)|Guten Morgen.|formal"
    assert "template field '{note}'" in named.validate_row(row)
    with pytest.raises(ValueError, match="source language"):
        head.prompt(row)  # neither the row nor task_options.source_language says the language
    assert head_of("causal-lm", source_language="it").prompt(row).startswith("Translate from Italian")


def test_options_are_checked():
    from xft_generation import GenerationOptions

    with pytest.raises(ValueError, match="named template"):
        GenerationOptions(template="translation")
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationOptions(max_new_tokens=0)
    head = head_of("causal-lm", source_field="prompt", target_field="completion")
    assert head.validate_row({"prompt": "Hi", "completion": " "}) == "field 'completion' is empty"
    assert "missing field 'prompt'" in head.validate_row({"source": "x", "target": "y"})


# ----------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_causal_lm_labels_only_the_target_and_eos(family, tiny_model):
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model(family))
    head = head_of("causal-lm")
    rows = [{"source": "Guten Morgen.", "target": "Good morning.", ROW_LANGUAGE: "de"},
            {"source": "Buenos días, ¿cómo estás?", "target": "Good morning, how are you?", ROW_LANGUAGE: "es"}]
    features = head.encode(rows, tokenizer, 128)
    for row, feature in zip(rows, features):
        prompt = tokenizer(head.prompt(row))["input_ids"]
        target = tokenizer(" " + row["target"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert feature["input_ids"] == prompt + target
        assert feature["labels"] == [-100] * len(prompt) + target
        assert tokenizer.decode(feature["input_ids"][len(prompt):], skip_special_tokens=True) == " " + row["target"]
    batch = head.collate(features, tokenizer)
    short, width = len(features[0]["input_ids"]), batch["input_ids"].shape[1]
    assert width == len(features[1]["input_ids"]) > short
    assert batch["labels"][0, short:].eq(-100).all() and batch["attention_mask"][0, short:].eq(0).all()  # right padding
    assert batch["input_ids"][0, short:].eq(tokenizer.pad_token_id).all()
    # too long for max_length: the prompt is cut from the left (BOS kept), the target and EOS stay whole
    limit = 2 * len(target) + 2  # the target gets at least half of max_length
    assert len(features[1]["input_ids"]) > limit
    cut = head.encode(rows[1:], tokenizer, limit)[0]
    assert len(cut["input_ids"]) == limit and cut["input_ids"][0] == tokenizer.bos_token_id
    assert cut["input_ids"][-len(target):] == target and cut["labels"][-len(target):] == target


def test_seq2seq_labels_are_the_target_ending_in_eos(tiny_model):
    from xft_core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model("t5"))
    head = head_of("seq2seq")
    rows = [{"source": "Guten Morgen.", "target": "Good morning.", ROW_LANGUAGE: "de"},
            {"source": "Das Wetter ist schön.", "target": "The weather is lovely today.", ROW_LANGUAGE: "de"}]
    features = head.encode(rows, tokenizer, 64)
    assert all(f["labels"][-1] == tokenizer.eos_token_id and f["input_ids"][-1] == tokenizer.eos_token_id for f in features)
    assert tokenizer.decode(features[1]["labels"], skip_special_tokens=True) == rows[1]["target"]
    batch = head.collate(features, tokenizer)
    n = len(features[0]["labels"])
    assert batch["labels"][0, n:].eq(-100).all() and "decoder_input_ids" not in batch


# ---------------------------------------------------------------------------------------- training
@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`", "ignore:Setting `save_embedding_layers`")
@pytest.mark.parametrize("strategy", ["full", "lora"])
@pytest.mark.parametrize(("family", "task"), HEADS)
def test_generation_heads_train_and_the_loss_falls(family, task, strategy, tiny_model, copy_data, tmp_path, gpm):
    config = generation_config(tiny_model(family), copy_data, tmp_path, task, strategy, training={"max_steps": 16})
    if strategy == "lora" and task == "causal-lm":
        # the tiny decoders' embeddings (init std 0.02, tied to the LM head) give logits too small for attention
        # and MLP adapters alone to sharpen within 16 steps; an adapter on the LM head lets them
        config["strategy_options"]["target_modules"] = [*DECODER_PROJECTIONS, "lm_head"]
    before = dataset_loss(prepare(load_config(config), pm=gpm))
    run = train(config, pm=gpm, progress=False)
    after = dataset_loss(run)
    assert after < before - 0.5, f"loss did not fall: {before:.3f} -> {after:.3f}"
    assert set(run.metrics) == {"de", "es", "ru"}
    assert all(set(m) == {"chrf", "bleu"} and 0 <= m["chrf"] <= 100 for m in run.metrics.values())
    manifest = json.loads((next(iter(run.adapter_dirs.values())) / "xft.json").read_text())
    assert manifest["task"] == task and "labels" not in manifest


@pytest.mark.parametrize(("family", "task"), HEADS)
def test_per_language_lora_adapters_each_train(family, task, tiny_model, copy_data, tmp_path, gpm):
    import torch

    config = generation_config(tiny_model(family), copy_data, tmp_path, task, adapters="per_language", training={"max_steps": 12})
    start = prepare(load_config(config), pm=gpm)  # lora target_modules: auto
    before = dataset_loss(start)
    initial = {n: p.detach().clone() for n, p in start.model.named_parameters() if p.requires_grad}
    run = train(config, pm=gpm, progress=False)
    assert dataset_loss(run) < before - 0.05
    assert sorted(run.adapter_dirs) == ["de", "es", "ru"] and set(run.metrics) == {"de", "es", "ru"}
    trained = dict(run.accelerator.unwrap_model(run.model).named_parameters())
    for language in ("de", "es", "ru"):
        assert any(f".{language}." in n and not torch.equal(initial[n], trained[n]) for n in initial), language
        assert json.loads((run.adapter_dirs[language] / "xft.json").read_text())["languages"] == [language]


@pytest.mark.parametrize(("family", "task"), [HEADS[0], HEADS[2]])
def test_copy_task_is_learned_and_chrf_rises(family, task, tiny_model, copy_data, tmp_path, gpm):
    config = generation_config(tiny_model(family), copy_data, tmp_path, task, "full",
                               training={"max_steps": 120, "lr_scheduler": "constant", "warmup_ratio": 0.0})
    before = evaluate_dev(prepare(load_config(config), pm=gpm))
    run = train(config, pm=gpm, progress=False)
    gain = {lang: run.metrics[lang]["chrf"] - before[lang]["chrf"] for lang in before}
    assert sum(gain.values()) / len(gain) > 40, (before, run.metrics)
    assert all(g > 10 for g in gain.values()), gain


# -------------------------------------------------------------------------------------- prediction
def _perturbed_per_language_run(model, data, out, task, pm):
    """A per-language LoRA run whose three adapters differ (random B matrices), without training."""
    import torch

    config = generation_config(model, data, out, task, adapters="per_language")
    config["task_options"]["max_new_tokens"] = 12
    run = prepare(load_config(config), pm=pm)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in run.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return run


@pytest.mark.parametrize(("family", "task"), [HEADS[0], HEADS[2]])
def test_mixed_adapter_generation_equals_each_adapter_alone(family, task, tiny_model, copy_data, tmp_path, gpm):
    run = _perturbed_per_language_run(tiny_model(family), copy_data, tmp_path, task, gpm)
    model, head, tokenizer = run.model, run.head, run.tokenizer
    rows = [{**r, ROW_LANGUAGE: lang} for lang, part in sorted(run.train.items()) for r in part.rows[:2]]
    order = [1, 4, 0, 5, 2, 3]  # interleave languages inside one batch
    rows = [rows[i] for i in order]
    names = [r[ROW_LANGUAGE] for r in rows]
    mixed = predict_rows(head, model, tokenizer, rows, batch_size=6, max_length=64, route={"adapter_names": names})
    alone = {}
    for language in ("de", "es", "ru"):
        run.strategy.activate(model, language)
        mine = [r for r in rows if r[ROW_LANGUAGE] == language]
        alone.update(zip([id(r) for r in mine], predict_rows(head, model, tokenizer, mine, batch_size=1, max_length=64)))
    assert [p["text"] for p in mixed] == [alone[id(r)]["text"] for r in rows]
    assert len({p["text"] for p in mixed}) > 1, "adapters should generate different texts"
    assert all(isinstance(p["text"], str) and p["text"] for p in mixed)


@pytest.mark.parametrize(("family", "task"), HEADS)
def test_batched_generation_equals_one_row_at_a_time(family, task, tiny_model, copy_data, tmp_path, gpm):
    """Left padding must not change what a decoder generates; the tokenizer's padding side is left alone."""
    run = _perturbed_per_language_run(tiny_model(family), copy_data, tmp_path, task, gpm)
    rows = [{**r, ROW_LANGUAGE: "de"} for r in run.train["de"].rows] + [{"source": "Doброе", "target": "x", ROW_LANGUAGE: "ru"}]
    side = run.tokenizer.padding_side
    together = predict_rows(run.head, run.model, run.tokenizer, rows, batch_size=8, max_length=64)
    apart = [predict_rows(run.head, run.model, run.tokenizer, [r], batch_size=1, max_length=64)[0] for r in rows]
    assert together == apart and run.tokenizer.padding_side == side


def test_stop_strings_cut_generated_text(tiny_model):
    import torch

    from xft_core.models import load_tokenizer
    from xft_generation import _stop_after_text

    head = head_of("causal-lm", stop_strings=["\n", "###"])
    assert head.finish(" Good morning.\nTranslate from") == "Good morning."
    assert head.finish("\n\nGood morning.\nGerman:") == "Good morning.", "a leading newline is not a stop"
    assert head.finish("Hello ### more") == "Hello"
    assert head_of("causal-lm").finish(" a\nb ") == "a\nb"
    tokenizer = load_tokenizer(tiny_model("gemma3"))
    prompt = tokenizer("Hi:", add_special_tokens=False)["input_ids"]
    stop = _stop_after_text(tokenizer, ["\n"], start_at=len(prompt))[0]
    ids = [prompt + tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("\nGood\nmorning", "\nGood morning")]
    width = max(map(len, ids))
    batch = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i in ids])
    assert stop(batch, None).tolist() == [True, False]


def test_router_serves_translation_adapters_with_the_row_language_in_the_prompt(tiny_model, copy_data, tmp_path, gpm):
    """The default translation template names the source language: the router must hand each row's language on."""
    from xft_core.inference.router import Router
    from xft_core.training import train

    config = generation_config(tiny_model("gemma3"), copy_data, tmp_path, "causal-lm", adapters="per_language",
                               training={"max_steps": 2})
    config["task_options"] = {"max_new_tokens": 4}  # default template: "Translate from {source_language} ..."
    run = train(config, pm=gpm, progress=False)
    router = Router.from_run(run.paths.root, pm=gpm)
    out = router.predict(["guten Tag", "hola amigo"], languages=["de", "es"])
    assert [p["adapter"] for p in out] == ["de", "es"]
    assert all(isinstance(p["text"], str) for p in out)
