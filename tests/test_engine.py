"""End-to-end training on tiny offline models: every strategy x sampler, per-language adapters, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.config import load_config
from xft_core.hooks.spec import hookimpl
from xft_core.training import prepare, train

SAMPLERS = ["proportional", "uniform", "temperature", "unimax", "round_robin"]


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("easy"), vocabulary=2)


def dataset_loss(run) -> float:
    """Mean loss over every training example of every language, eval mode (no dropout), deterministic."""
    import torch

    model = run.accelerator.unwrap_model(run.model)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for language, features in run.features.items():
            run.strategy.activate(model, run.adapter_for(language) if run.per_language else None)
            batch = run.head.collate(features, run.tokenizer)
            total += float(model(**batch).loss) * len(features)
            count += len(features)
    return total / count


# learning rates that move a tiny random model within a test's few steps: (full, lora)
RATES = {"bert": (1e-2, 5e-2), "xlm-roberta": (1e-2, 5e-2), "gemma3": (3e-3, 1e-2), "qwen2": (3e-3, 1e-2), "llama": (3e-3, 1e-2)}


def _strategy(config: dict, strategy: str) -> dict:
    family = Path(config["model"]).name
    config["strategy"] = strategy
    if strategy == "full":
        config["strategy_options"] = {}
    config["training"]["learning_rate"] = RATES[family][strategy == "lora"]
    return config


@pytest.mark.parametrize("family", ["bert", "gemma3"])
@pytest.mark.parametrize("strategy", ["full", "lora"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_strategy_and_sampler_trains_and_the_loss_falls(family, strategy, sampler, tiny_model, easy_data, tmp_path, pm):
    config = _strategy(tiny_config(tiny_model(family), easy_data, tmp_path, sampler=sampler, training={"max_steps": 24}),
                       strategy)
    before = dataset_loss(prepare(load_config(config), pm=pm))
    run = train(config, pm=pm, progress=False)
    after = dataset_loss(run)
    assert after < before - 0.02, f"loss did not fall: {before:.4f} -> {after:.4f}"
    drawn = run.sampler.counts
    assert set(drawn) == {"en", "de", "ru"} and sum(drawn.values()) == 24 * 8
    assert (run.paths.root / "metrics.jsonl").is_file() and (run.paths.root / "config.yaml").is_file()
    assert set(run.metrics) == {"en", "de", "ru"} and all(0 <= m["macro_f1"] <= 1 for m in run.metrics.values())


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_per_language_adapters_each_train_only_on_their_language(family, tiny_model, easy_data, tmp_path, pm):
    import torch

    config = _strategy(tiny_config(tiny_model(family), easy_data, tmp_path, adapters="per_language", sampler="round_robin",
                                   training={"max_steps": 24}), "lora")
    start = prepare(load_config(config), pm=pm)
    before = dataset_loss(start)
    initial = {n: p.detach().clone() for n, p in start.model.named_parameters() if p.requires_grad}
    run = train(config, pm=pm, progress=False)
    assert dataset_loss(run) < before - 0.02
    assert sorted(run.adapter_dirs) == ["de", "en", "ru"]
    trained = dict(run.accelerator.unwrap_model(run.model).named_parameters())
    for language in ("en", "de", "ru"):
        moved = [n for n in initial if f".{language}." in n and not torch.equal(initial[n], trained[n])]
        assert moved, f"{language} adapter did not change"
        manifest = json.loads((run.paths.adapters / language / "xft.json").read_text())
        assert manifest["languages"] == [language] and manifest["labels"] == ["neg", "pos"]
        assert (run.paths.adapters / language / "adapter_model.safetensors").is_file()


def test_per_language_adapter_untouched_when_its_language_is_never_drawn(tiny_model, easy_data, tmp_path, pm):
    import torch

    class OnlyEnglish:
        @hookimpl
        def xft_samplers(self):
            from xft_core.hooks.descriptors import SamplerSpec
            from xft_core.hooks.sampling import ProbabilitySampler

            yield SamplerSpec(name="only-en",
                              build=lambda sizes, options, seed: ProbabilitySampler({"en": 1.0, "de": 0.0, "ru": 0.0}, seed))

    pm.register(OnlyEnglish(), name="only-en-plugin")
    config = _strategy(tiny_config(tiny_model("gemma3"), easy_data, tmp_path, adapters="per_language", sampler="only-en"), "lora")
    start = prepare(load_config(config), pm=pm)
    initial = {n: p.detach().clone() for n, p in start.model.named_parameters() if ".de." in n}
    run = train(config, pm=pm, progress=False)
    trained = dict(run.accelerator.unwrap_model(run.model).named_parameters())
    assert all(torch.equal(initial[n], trained[n]) for n in initial)
    assert run.sampler.counts["de"] == 0 and run.sampler.counts["en"] == 12 * 8


class _Crash(Exception):
    pass


def test_resume_after_a_crash_ends_with_the_same_weights(tiny_model, easy_data, tmp_path, pm):
    from safetensors.torch import load_file

    def config_for(out):
        c = tiny_config(tiny_model("bert"), easy_data, out, sampler="temperature", adapters="per_language",
                        training={"max_steps": 10, "save_every": 4})
        c["strategy_options"] = {"r": 4, "alpha": 8, "dropout": 0.1}  # dropout: the RNG state must be restored too
        return c

    reference = train(config_for(tmp_path / "a"), pm=pm, progress=False)

    class CrashAtStep6:
        @hookimpl
        def xft_after_step(self, run, step, logs):
            if step == 6:
                raise _Crash()

    crasher = CrashAtStep6()
    pm.register(crasher, name="crash")
    with pytest.raises(_Crash):
        train(config_for(tmp_path / "b"), pm=pm, progress=False)
    pm.unregister(crasher)
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "tiny" / "checkpoints").iterdir())
    assert checkpoints == ["step-4"]
    with pytest.raises(FileExistsError, match="--resume"):
        train(config_for(tmp_path / "b"), pm=pm, progress=False)
    resumed = train(config_for(tmp_path / "b"), pm=pm, progress=False, resume=True)
    assert resumed.step == 10
    a = load_file(str(reference.paths.checkpoints / "step-10" / "trainable.safetensors"))
    b = load_file(str(resumed.paths.checkpoints / "step-10" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-6, worst
    steps = [r["step"] for r in map(json.loads, (resumed.paths.metrics).read_text().splitlines()) if "loss" in r]
    assert steps == list(range(1, 11)), "metrics.jsonl must hold each step once after a resume"


def test_early_stopping_and_best_checkpoint(tiny_model, easy_data, tmp_path, pm):
    class FlatMetric:
        """Reports a dev metric that only gets worse after the first evaluation."""

        @hookimpl
        def xft_after_eval(self, run, step, metrics):
            for language in metrics:
                metrics[language]["macro_f1"] = 1.0 / step

    pm.register(FlatMetric(), name="flat")
    config = tiny_config(
        tiny_model("gemma3"), easy_data, tmp_path,
        training={"max_steps": 40, "eval_every": 2, "early_stopping_patience": 2, "load_best_at_end": True},
    )
    run = train(config, pm=pm, progress=False)
    assert run.step == 6, "two evaluations without improvement after step 2 stop the run at step 6"
    assert run.best["step"] == 2
    assert Path(run.best["checkpoint"]).name == "step-2"


def test_two_cpu_processes_share_one_run_under_torchrun(tiny_model, easy_data, tmp_path):
    """`torchrun --nproc_per_node 2 xft train` forms a gloo group: each step draws one language for both ranks."""
    import shutil
    import subprocess
    import sys

    import yaml

    config = tiny_config(tiny_model("bert"), easy_data, tmp_path, adapters="per_language", sampler="temperature",
                         training={"max_steps": 6, "save_every": 3})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    xft = shutil.which("xft") or str(Path(sys.executable).parent / "xft")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    result = subprocess.run(
        [torchrun, "--nproc_per_node", "2", xft, "train", str(path), "--no-progress"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny" / "run.json").read_text())
    assert summary["num_processes"] == 2
    assert sum(summary["examples_drawn"].values()) == 6 * 8 * 2
    assert sorted(p.name for p in (tmp_path / "tiny" / "adapters").iterdir()) == ["de", "en", "ru"]
    assert sorted(p.name for p in (tmp_path / "tiny" / "checkpoints").iterdir()) == ["step-3", "step-6"]


def test_two_runs_in_one_process_may_use_different_precisions(tiny_model, easy_data, tmp_path, pm):
    first = train(tiny_config(tiny_model("gemma3"), easy_data, tmp_path, name="fp32", training={"max_steps": 2}),
                  pm=pm, progress=False)
    second = train(tiny_config(tiny_model("gemma3"), easy_data, tmp_path, name="bf16",
                               training={"max_steps": 2, "precision": "bf16"}), pm=pm, progress=False)
    precision = [json.loads(run.paths.run_info.read_text())["precision"] for run in (first, second)]
    assert precision == ["no", "bf16"]


def test_lora_top_layers_adapts_only_the_top_of_the_stack(tiny_model, easy_data, tmp_path, pm):
    config = tiny_config(tiny_model("gemma3"), easy_data, tmp_path, strategy_options={"r": 4, "alpha": 8, "top_layers": 1})
    run = prepare(load_config(config), pm=pm)
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in run.model.named_parameters() if "lora_" in n}
    assert adapted == {"1"}, "a 2-layer model with top_layers=1 adapts layer 1 only"


def test_per_language_adapters_can_start_from_a_multilingual_adapter(tiny_model, easy_data, tmp_path, pm):
    import torch
    from safetensors.torch import load_file

    shared = train(tiny_config(tiny_model("gemma3"), easy_data, tmp_path, name="shared", training={"max_steps": 3}),
                   pm=pm, progress=False)
    folder = shared.adapter_dirs["multilingual"]
    config = tiny_config(tiny_model("gemma3"), easy_data, tmp_path, name="from-shared", adapters="per_language",
                         init_from=str(folder))
    run = prepare(load_config(config), pm=pm)
    saved = load_file(str(folder / "adapter_model.safetensors"))
    params = dict(run.model.named_parameters())
    lora_b = [k for k in saved if "lora_B" in k]
    assert lora_b and any(float(saved[k].abs().max()) > 0 for k in lora_b), "the shared adapter must have trained"
    for language in ("en", "de", "ru"):
        for key in lora_b:
            name = key.replace(".lora_B.weight", f".lora_B.{language}.weight")
            assert torch.equal(params[name].detach(), saved[key]), name


@pytest.mark.parametrize("family", ["xlm-roberta", "qwen2", "llama"])
@pytest.mark.parametrize("adapters", ["single", "per_language"])
def test_classification_trains_on_the_other_families(family, adapters, tiny_model, easy_data, tmp_path, pm):
    config = _strategy(tiny_config(tiny_model(family), easy_data, tmp_path, adapters=adapters, sampler="round_robin",
                                   training={"max_steps": 24}), "lora")
    before = dataset_loss(prepare(load_config(config), pm=pm))
    run = train(config, pm=pm, progress=False)
    assert dataset_loss(run) < before - 0.02
