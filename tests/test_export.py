"""`xft export` on tiny models: a merged folder gives base + adapter's logits through plain transformers (LoRA per
language, full fine-tuning, BitFit, MAD-X with label words); a generation LoRA adapter exported for vLLM / LoRAX has
the files, config keys and tensor names their loaders read and loads with plain peft to the same logits and
generation; TorchScript gives the same logits on texts of different lengths; refusals and CLI exit codes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config
from xft_core.export import EXPORT_INFO, ExportError, export
from xft_core.inference.router import Router
from xft_core.training import train

TEXTS = ["Buch gut", "Telefon schlecht und die Kamera ist furchtbar, wirklich mies", "x", "Kamera toll"]
TOLERANCE = 1e-4


def worst(a, b) -> float:
    import torch

    return float((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)).abs().max())


def plain_logits(folder: Path, texts: list[str]):
    """What any Hugging Face user gets from the merged folder: Auto classes, nothing of xft."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model, model(**tokenizer(texts, return_tensors="pt", padding=True)).logits


def manager(*extra):
    """A fresh plugin manager with the built-in plugins of conftest's `pm` and `extra` modules (module fixtures)."""
    import xft_classification
    import xft_full
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_full, xft_samplers, xft_classification, xft_metrics, xft_sources, *extra):
        pm.register(module, name=module.__name__)
    return pm


def served_logits(run_root: Path, pm, texts: list[str], language: str) -> list[list[float]]:
    """Base + adapter as xft serves it: the router; for `full` (a whole model, which the router refuses to hot-swap)
    the evaluation's path, the package attached to the base through its strategy and `predict_rows`."""
    from xft_core.adapters import Manifest, attach, load_base
    from xft_core.evaluation.predict import predict_rows, with_language

    package = next((run_root / "adapters").iterdir()) if (run_root / "adapters").is_dir() else run_root
    if Manifest.read(package).strategy != "full":
        return [p["logits"] for p in Router.from_run(run_root, pm=pm).predict(texts, language)]
    base = load_base(package, pm)
    model = attach(base, base.model, package, "full")
    rows = with_language([base.head.input_row(t) for t in texts], language)
    return [p["logits"] for p in predict_rows(base.head, model, base.tokenizer, rows, batch_size=8, max_length=128)]


@pytest.fixture(scope="module")
def runs(tiny_model, sentiment_data, tmp_path_factory):
    """Sequence classification: per-language LoRA (bert), one LoRA (qwen2, last-token pooling), full fine-tuning."""
    out = tmp_path_factory.mktemp("export-runs")
    pm = manager()
    bert, qwen2 = tiny_model("bert"), tiny_model("qwen2")
    return {
        "per_language": train(tiny_config(bert, sentiment_data, out, name="per-language", adapters="per_language",
                                          sampler="round_robin"), pm=pm, progress=False).paths.root,
        "qwen2": train(tiny_config(qwen2, sentiment_data, out, name="qwen2"), pm=pm, progress=False).paths.root,
        "full": train(tiny_config(bert, sentiment_data, out, name="full", strategy="full", strategy_options={},
                                  training={"max_steps": 4, "learning_rate": 1e-3}), pm=pm, progress=False).paths.root,
    }


# ------------------------------------------------------------------------------------------------ merged
@pytest.mark.parametrize(("run", "adapter", "language"), [("per_language", "de", "de"), ("qwen2", None, "en"),
                                                          ("full", None, "en")])
def test_merged_export_gives_base_plus_adapter_logits_with_plain_transformers(run, adapter, language, runs, pm, tmp_path):
    exported = export(runs[run], tmp_path / "merged", to="merged", adapter=adapter, pm=pm)
    model, logits = plain_logits(exported.path, TEXTS)
    expected = served_logits(runs[run], pm, TEXTS, language)
    assert worst(logits, expected) < TOLERANCE
    assert model.config.id2label == {0: "neg", 1: "pos"}, "AutoModelForSequenceClassification gives the labels"
    assert not any(type(m).__module__.startswith("peft") for m in model.modules())
    info = json.loads((exported.path / EXPORT_INFO).read_text())
    package = Path(info["source_package"])
    assert package.name == (adapter or "multilingual") and info["to"] == "merged"
    assert info["manifest_sha256"] == hashlib.sha256((package / "xft.json").read_bytes()).hexdigest()
    assert info["base_fingerprint"] == json.loads((package / "xft.json").read_text())["base_fingerprint"]
    assert info["labels"] == ["neg", "pos"] and info["auto_class"] == "AutoModelForSequenceClassification"
    assert exported.info == info


def test_each_language_of_a_per_language_run_exports_its_own_adapter(runs, pm, tmp_path):
    merged = {lang: plain_logits(export(runs["per_language"], tmp_path / lang, adapter=lang, pm=pm).path, TEXTS)[1]
              for lang in ("de", "ru")}
    assert worst(merged["de"], merged["ru"]) > 1e-3, "two languages, two adapters"
    assert worst(merged["ru"], served_logits(runs["per_language"], pm, TEXTS, "ru")) < TOLERANCE
    with pytest.raises(ExportError, match=r"3 adapter packages \(de, en, ru\); choose one with --adapter"):
        export(runs["per_language"], tmp_path / "x", pm=pm)
    with pytest.raises(ExportError, match=r"no adapter package 'fr' \(packages: de, en, ru\)"):
        export(runs["per_language"], tmp_path / "x", adapter="fr", pm=pm)


def test_the_output_folder_is_new_or_an_earlier_export_and_never_the_package(runs, pm, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an xft export"):
        export(runs["qwen2"], tmp_path / "busy", pm=pm)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="overlaps the package"):
        export(runs["qwen2"], runs["qwen2"] / "adapters" / "multilingual" / "merged", pm=pm)
    first = export(runs["qwen2"], tmp_path / "again", pm=pm)
    again = export(runs["qwen2"], tmp_path / "again", pm=pm)  # an earlier export is replaced whole
    assert first.path == again.path and (again.path / EXPORT_INFO).is_file()
    with pytest.raises(ExportError, match="unknown export target 'onnx'"):
        export(runs["qwen2"], tmp_path / "y", to="onnx", pm=pm)


def test_bitfit_a_strategy_without_peft_merges_its_biases(tiny_model, sentiment_data, pm, tmp_path):
    from test_bitfit_strategy import BitFitPlugin, bitfit_config

    pm.register(BitFitPlugin(), name="bitfit")
    run = train(bitfit_config(tiny_model("bert"), sentiment_data, tmp_path, training={"max_steps": 4, "learning_rate": 5e-2}),
                pm=pm, progress=False)
    exported = export(run.paths.root, tmp_path / "merged", pm=pm)
    assert worst(plain_logits(exported.path, TEXTS)[1], served_logits(run.paths.root, pm, TEXTS, "de")) < TOLERANCE


def test_merged_export_asks_the_strategy_what_merge_left_behind(runs, tmp_path):
    """The engine knows no peft: it asks `Strategy.leftovers` after `merge`. A LoRA whose merge forgets to unload is
    refused with peft's layers named (xft_peft.leftovers); so is a strategy of any kind that reports its own."""
    import xft_lora
    from xft_core.hooks import StrategySpec, hookimpl
    from xft_lora.strategy import Lora

    class Unmerged(Lora):
        def merge(self, model, adapter, language=None):
            return model  # still the PeftModel, every LoRA layer in place

    class Reporting(Lora):
        def leftovers(self, model):
            return ["my.side.table", *super().leftovers(model)]

    for strategy, expected in ((Unmerged, r"\(the model itself, .*q_proj"), (Reporting, r"\(my\.side\.table\)")):
        class Plugin:
            build = strategy

            @hookimpl
            def xft_strategies(self):
                yield StrategySpec(name="lora", options=xft_lora.LoraOptions, build=self.build, per_language=True,
                                   stackable=True)

        pm = manager()
        pm.unregister(name="xft_lora")
        pm.register(Plugin(), name="xft_lora")
        with pytest.raises(ExportError, match=r"merge\(\) returned a model still holding its own machinery " + expected):
            export(runs["qwen2"], tmp_path / strategy.__name__, pm=pm)
        assert not (tmp_path / strategy.__name__).exists()


def test_prompt_tuning_cannot_be_merged_and_says_why(tiny_model, sentiment_data, pm, tmp_path):
    import xft_prompt_tuning

    pm.register(xft_prompt_tuning, name="xft_prompt_tuning")
    run = train(tiny_config(tiny_model("bert"), sentiment_data, tmp_path, strategy="prompt-tuning",
                            strategy_options={"num_virtual_tokens": 4}, training={"max_steps": 1}), pm=pm, progress=False)
    with pytest.raises(ExportError, match="cannot be merged into the model's weights: a soft prompt"):
        export(run.paths.root, tmp_path / "merged", pm=pm)
    assert not (tmp_path / "merged").exists()


def test_madx_merges_the_task_adapter_over_one_language_and_records_how_to_score_label_words(
        tiny_model, sentiment_data, tmp_path):
    """prompt-classification: the merged folder is the LM itself; xft-export.json's template and label word ids give
    the scores the router gives, for the language adapter chosen."""
    import torch
    from test_madx import TEMPLATE, _manager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = tiny_model("gemma3")
    languages = train(tiny_config(model, sentiment_data, tmp_path, name="lang", task="language-modeling",
                                  adapters="per_language", training={"max_steps": 4, "learning_rate": 2e-2}),
                      pm=_manager(), progress=False)
    config = tiny_config(model, sentiment_data, tmp_path, name="task", task="prompt-classification", strategy="madx",
                         strategy_options={"r": 4, "alpha": 8, "language_adapters": str(languages.paths.root)},
                         task_options={"template": TEMPLATE}, training={"max_steps": 4, "learning_rate": 1e-2})
    config["data"].update(train_languages=["en"], eval_languages=["de", "en", "ru"])
    task = train(config, pm=_manager(), progress=False)
    exported = {lang: export(task.paths.root, tmp_path / f"merged-{lang}", language=lang, pm=_manager())
                for lang in ("de", "ru")}
    texts = ["Buch gut", "книга плохо и телефон ужасно"]
    router = Router.from_run(task.paths.root, pm=_manager())
    scored = {}
    for lang, result in exported.items():
        info = result.info
        assert info["auto_class"] == "AutoModelForCausalLM" and info["language_adapter"] == lang
        scoring = info["scoring"]
        lm, tokenizer = AutoModelForCausalLM.from_pretrained(result.path).eval(), AutoTokenizer.from_pretrained(result.path)
        ids = scoring["label_token_ids"].get(lang, scoring["label_token_ids"]["*"])
        batch = tokenizer([scoring["template"].format(text=t) for t in texts], return_tensors="pt", padding=True)
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the last real token answers
        with torch.no_grad():
            logits = lm(**batch).logits[torch.arange(len(texts)), last][:, ids]
        scored[lang] = logits
        assert worst(logits, [p["logits"] for p in router.predict(texts, lang)]) < TOLERANCE
    assert worst(scored["de"], scored["ru"]) > 1e-6, "each export carries its own language adapter"
    with pytest.raises(ExportError, match="drop --language"):
        export(tmp_path / "lang", tmp_path / "x", adapter="de", language="de", pm=_manager())


# ----------------------------------------------------------------------------------------- torchscript
@pytest.mark.parametrize(("run", "adapter", "language"), [("per_language", "de", "de"), ("qwen2", None, "en")])
def test_torchscript_gives_the_merged_logits_on_texts_of_different_lengths(run, adapter, language, runs, pm, tmp_path):
    import torch
    from transformers import AutoTokenizer

    exported = export(runs[run], tmp_path / "ts", to="torchscript", adapter=adapter, pm=pm)
    info = exported.info
    assert info["padding"] == "dynamic" and info["checked"]["max_abs_diff"] <= TOLERANCE
    assert len({tuple(shape) for shape in info["checked"]["batches"]}) == len(info["checked"]["batches"])
    assert sorted(p.name for p in exported.path.iterdir() if not p.name.startswith("tokenizer")
                  and p.name != "special_tokens_map.json") == ["model.pt", EXPORT_INFO]
    traced = torch.jit.load(str(exported.path / "model.pt"))
    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    expected = served_logits(runs[run], pm, TEXTS, language)
    for texts, rows in ((TEXTS, expected), (TEXTS[2:3], expected[2:3]), (TEXTS[:2], expected[:2])):
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            assert worst(traced(*[batch[name] for name in info["inputs"]]), rows) < TOLERANCE
    assert [info["id2label"][str(i)] for i in range(2)] == ["neg", "pos"]


# ------------------------------------------------------------------------------------------ vLLM, LoRAX
VLLM_TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_[AB]\.weight$")


@pytest.fixture(scope="module")
def generation(tiny_model, tmp_path_factory):
    """A causal-lm LoRA package (qwen2, copy task) and a plugin manager with the generation heads."""
    from test_generation import generation_config, write_copy_data

    import xft_generation

    out = tmp_path_factory.mktemp("export-generation")
    pm = manager(xft_generation)
    config = generation_config(tiny_model("qwen2"), write_copy_data(out / "data"), out, "causal-lm",
                               training={"max_steps": 6})
    run = train(config, pm=pm, progress=False)
    return {"run": run.paths.root, "package": run.paths.root / "adapters" / "multilingual", "pm": pm,
            "model": tiny_model("qwen2")}


def vllm_reads(folder: Path) -> dict:
    """vLLM's loader checks, as its source states them (vllm/lora/peft_helper.py PEFTHelper.from_dict and
    _validate_features, vllm/lora/lora_model.py from_local_checkpoint, vllm/lora/utils.py parse_fine_tuned_lora_name,
    vllm/config/lora.py max_lora_rank default 16)."""
    from safetensors import safe_open

    config = json.loads((folder / "adapter_config.json").read_text())
    assert {"r", "lora_alpha", "target_modules"} <= set(config)
    assert not config.get("modules_to_save") and not config.get("use_dora") and config.get("bias", "none") == "none"
    assert config["r"] <= 16, "fits vLLM's default --max-lora-rank"
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert keys and all(VLLM_TENSOR.match(k) for k in keys), [k for k in keys if not VLLM_TENSOR.match(k)][:3]
    return config


@pytest.mark.parametrize("to", ["vllm", "lorax"])
def test_generation_adapter_for_vllm_and_lorax_has_their_layout_and_loads_with_plain_peft(to, generation, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xft_core.adapters import attach, load_base

    exported = export(generation["run"], tmp_path / to, to=to, pm=generation["pm"])
    folder = exported.path
    assert sorted(p.name for p in folder.iterdir()) == sorted(["adapter_config.json", "adapter_model.safetensors",
                                                               "README.md", EXPORT_INFO])
    assert len(list(folder.glob("*.safetensors"))) == 1, "LoRAX loads every *.safetensors of the folder"
    config = vllm_reads(folder)
    base_path = str(Path(generation["model"]).resolve())
    assert config["base_model_name_or_path"] == base_path and config["inference_mode"] is True
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert LoraConfig.from_pretrained(str(folder)).r == config["r"], "LoRAX reads the config with peft's LoraConfig"
    readme = (folder / "README.md").read_text()
    if to == "vllm":
        name = exported.info["lora_name"]
        assert f"vllm serve {base_path} --enable-lora --max-lora-rank 8 --lora-modules {name}={folder.resolve()}" in readme
    else:
        assert f"lorax-launcher --model-id {base_path}" in readme
        assert f'"adapter_id": "{folder.resolve()}", "adapter_source": "local"' in readme

    # plain peft on the plain base gives what xft computes with the package attached
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    batch = tokenizer(["Guten Morgen.", "Das Wetter ist schön."], return_tensors="pt", padding=True)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(folder)).eval()
    base = load_base(generation["package"], generation["pm"])
    with torch.no_grad():
        plain_base = base.model(**batch).logits.clone()
        xft_model = attach(base, base.model, generation["package"], "gen").eval()
        ours, theirs = xft_model(**batch).logits, peft_model(**batch).logits
        assert worst(ours, plain_base) > 1e-4, "the adapter changes the model (else the comparison says nothing)"
        assert worst(ours, theirs) < TOLERANCE
        one = tokenizer(["Guten Morgen."], return_tensors="pt")
        kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
        assert torch.equal(xft_model.generate(**one, **kwargs), peft_model.generate(**one, **kwargs))


def test_vllm_and_lorax_refuse_what_their_loaders_cannot_serve(generation, runs, pm, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(ExportError, match=r"vLLM serves LoRA adapters of text-generation models \(task kind causal-lm\); "
                                          r"this package is task 'sequence-classification'"):
        export(runs["per_language"], tmp_path / "x", to="vllm", adapter="de", pm=pm)
    with pytest.raises(ExportError, match="LoRAX serves LoRA adapters of text-generation models"):
        export(runs["full"], tmp_path / "x", to="lorax", pm=pm)
    with pytest.raises(ExportError, match="merged and torchscript exports"):
        export(generation["run"], tmp_path / "x", to="vllm", language="de", pm=generation["pm"])

    def variant(name: str, config_changes: dict, drop_layer: bool = False) -> Path:
        copy = shutil.copytree(generation["package"], tmp_path / name)
        config = json.loads((copy / "adapter_config.json").read_text())
        (copy / "adapter_config.json").write_text(json.dumps({**config, **config_changes}))
        if drop_layer:  # adapted in the top layer only, as with strategy_options.top_layers
            weights = load_file(str(copy / "adapter_model.safetensors"))
            save_file({k: v for k, v in weights.items() if ".layers.0." not in k}, str(copy / "adapter_model.safetensors"))
        return copy

    for changes, message in (({"use_dora": True}, "does not support use_dora"),
                             ({"modules_to_save": ["score"]}, "does not support modules_to_save"),
                             ({"bias": "all"}, "does not support bias")):
        for to in ("vllm", "lorax"):
            with pytest.raises(ExportError, match=message):
                export(variant(f"{to}-{next(iter(changes))}", changes), tmp_path / "x", to=to, pm=generation["pm"])
    top = variant("top", {"layers_to_transform": [1]}, drop_layer=True)
    with pytest.raises(ExportError, match="adapted in some layers only"):
        export(top, tmp_path / "x", to="lorax", pm=generation["pm"])
    vllm_reads(export(top, tmp_path / "top-vllm", to="vllm", pm=generation["pm"]).path)  # vLLM resets unadapted modules
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("max_length, message", [(0, "give the longest input in tokens, at least 1"),
                                                 (100000, "the model takes at most 128 tokens")])
def test_torchscript_max_length_out_of_bounds_is_one_error(runs, tmp_path, capsys, max_length, message):
    """100000 was a raw tensor-size error from the trace; 0 silently became 128."""
    from xft_core.cli.main import main

    assert main(["export", str(runs["per_language"]), "--adapter", "de", "--to", "torchscript", "--out",
                 str(tmp_path / "ts"), "--max-length", str(max_length)]) == 2
    err = capsys.readouterr().err
    assert f"--max-length {max_length}: {message}" in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "ts").exists()


def test_out_that_is_a_symlink_is_refused_and_left_alone(runs, pm, tmp_path):
    """It used to be replaced by a folder, leaving a `.old-PID` link behind."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ExportError, match=rf"--out {tmp_path / 'link'}: is a symbolic link.*--out {tmp_path / 'real'}"):
        export(runs["qwen2"], tmp_path / "link", pm=pm)
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_an_out_that_cannot_be_written_is_named_not_its_hidden_temporary(runs, pm, tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # what a read-only parent folder does (root ignores modes)
    with pytest.raises(ExportError) as error:
        export(runs["qwen2"], tmp_path / "out", pm=pm)
    assert str(error.value).startswith(f"--out {tmp_path / 'out'}: cannot write the export there (Permission denied)")
    assert ".tmp" not in str(error.value)


def test_cli_exit_codes_and_messages(runs, tmp_path, capsys):
    from xft_core.cli.main import main

    assert main(["export", str(runs["per_language"]), "--to", "merged", "--out", str(tmp_path / "de"), "--adapter", "de"]) == 0
    assert "AutoModelForSequenceClassification.from_pretrained" in capsys.readouterr().out
    assert (tmp_path / "de" / EXPORT_INFO).is_file()
    for argv, message in (
        ([str(runs["per_language"]), "--to", "merged", "--out", str(tmp_path / "a")], "choose one with --adapter"),
        ([str(runs["per_language"]), "--to", "vllm", "--out", str(tmp_path / "b"), "--adapter", "de"], "causal-lm"),
        ([str(tmp_path / "missing"), "--to", "merged", "--out", str(tmp_path / "c")], "no such folder"),
        ([str(runs["qwen2"]), "--to", "merged", "--out", str(tmp_path / "d"), "--language", "de"], "drop --language"),
    ):
        assert main(["export", *argv]) == 2
        assert message in capsys.readouterr().err.replace("\n", " ")
    with pytest.raises(SystemExit) as exited:
        main(["export", str(runs["qwen2"]), "--to", "onnx", "--out", str(tmp_path / "e")])
    assert exited.value.code == 2
    assert not any((tmp_path / n).exists() for n in "abcde")
