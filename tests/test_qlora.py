"""A 4-bit base (QLoRA, `training.base_dtype: nf4`, plugin xft_bnb): LoRA trains over NF4 layers, the package
records the base it needs, the router serves it over a 4-bit base, export merges into full precision and says so.
The difference to a float base is measured and printed, and bounded, not hidden. Needs bitsandbytes (the optional
extra xft[qlora]); without it these tests skip, except the one checking the message that says what to install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.config import ConfigError
from xft_core.hooks import PluginError

TEXTS = ["phone good", "camera bad", "book great", "lamp awful", "chair good", "kettle bad"]


@pytest.fixture
def qpm(pm):
    import xft_bnb

    pm.register(xft_bnb, name="xft_bnb")
    return pm


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("qlora-data"), sizes={"en": 48}, vocabulary=2)


def config(tiny_model, data: Path, out: Path, base_dtype: str, **over) -> dict:
    return tiny_config(tiny_model("gemma3"), data, out, training={"max_steps": 24, "learning_rate": 1e-2,
                                                                  "base_dtype": base_dtype}, **over)


def four_bit_layers(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


@pytest.fixture(scope="module")
def trained(tiny_model, easy_data, tmp_path_factory):
    """The same LoRA run over an NF4 base and over a float32 base: {base_dtype: (run, run folder)}."""
    pytest.importorskip("bitsandbytes")
    import xft_bnb
    import xft_classification
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager
    from xft_core.training import train

    manager = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_samplers, xft_classification, xft_metrics, xft_sources, xft_bnb):
        manager.register(module, name=module.__name__)
    runs = {}
    for base_dtype in ("nf4", "float32"):
        out = tmp_path_factory.mktemp(f"qlora-{base_dtype}")
        run = train(config(tiny_model, easy_data, out, base_dtype), pm=manager, progress=False)
        runs[base_dtype] = (run, out / "tiny", manager)
    return runs


def test_lora_trains_over_a_4bit_base_and_the_package_says_so(trained):

    run, folder, _ = trained["nf4"]
    model = run.unwrapped_model()
    assert four_bit_layers(model) == 7 * 2  # q k v o gate up down in each of the tiny model's 2 layers
    lora_on_4bit = [m for m in model.modules() if type(m).__module__ == "peft.tuners.lora.bnb"]
    assert len(lora_on_4bit) == 14, "peft's LoRA layers for bitsandbytes wrap every 4-bit projection"
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n and "score" not in n)
    losses = [r["loss"] for r in run.history if "loss" in r]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, f"the loss must fall over a 4-bit base: {losses}"
    package = folder / "adapters" / "en"
    manifest = json.loads((package / "xft.json").read_text())
    assert manifest["base_dtype"] == "nf4"
    assert "base_dtype" not in json.loads((trained["float32"][1] / "adapters" / "en" / "xft.json").read_text())


def test_router_serves_the_adapter_over_a_4bit_base_and_the_difference_to_a_float_base_is_bounded(trained):
    """Reload through the router (which quantizes the base as the manifest says), predict, and compare with the
    same adapter over a float base: the scores differ (the base really is 4-bit) but the labels barely do."""
    from xft_core.inference.router import Router

    run, folder, manager = trained["nf4"]
    router = Router.from_run(folder, pm=manager)
    assert four_bit_layers(router.base.model) == 14, "the router quantized the base as the package records"
    served = router.predict(TEXTS, "en")
    # what training's own model predicts for the same texts: the reload is faithful
    from xft_core.evaluation.predict import predict_rows, with_language

    model = run.unwrapped_model()
    model.eval()
    direct = predict_rows(run.head, model, run.tokenizer, with_language([{"text": t} for t in TEXTS], "en"),
                          batch_size=8, max_length=32, precision="no")
    assert [p["label"] for p in served] == [p["label"] for p in direct]
    for a, b in zip(served, direct):
        assert max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]) < 1e-4

    float_router = Router.from_run(folder, pm=manager, base_dtype="float32")
    assert four_bit_layers(float_router.base.model) == 0
    over_float = float_router.predict(TEXTS, "en")
    gap = max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(served, over_float) for k in a["scores"])
    agree = sum(a["label"] == b["label"] for a, b in zip(served, over_float)) / len(TEXTS)
    nf4_f1, float_f1 = trained["nf4"][0].metrics["en"]["macro_f1"], trained["float32"][0].metrics["en"]["macro_f1"]
    print(f"nf4 vs float base: max score difference {gap:.4f}, labels agree {agree:.0%}; dev macro-F1 of the run over "
          f"nf4 {nf4_f1:.3f}, over float32 {float_f1:.3f}")
    assert gap > 1e-4, "a 4-bit base must change the scores a little (else it was not quantized)"
    assert agree >= 0.8, f"the same adapter over the float base should mostly agree, got {agree:.0%} (gap {gap:.3f})"
    assert abs(nf4_f1 - float_f1) <= 0.25, (nf4_f1, float_f1)


def test_export_merged_dequantizes_and_says_so(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from xft_core.export import export
    from xft_core.inference.router import Router

    _, folder, manager = trained["nf4"]
    exported = export(folder / "adapters" / "en", tmp_path / "merged", to="merged", pm=manager)
    assert "nf4" in exported.info["dequantized"] and "full-precision" in exported.info["dequantized"]
    merged = AutoModelForSequenceClassification.from_pretrained(exported.path).eval()
    assert all(p.is_floating_point() for p in merged.parameters()), "a plain full-precision model, no 4-bit weights"
    # the merged model is the adapter over the full-precision base
    float_router = Router.from_run(folder, pm=manager, base_dtype="float32")
    expected = [p["scores"] for p in float_router.predict(TEXTS[:2], "en")]
    import torch

    tokenizer = float_router.base.tokenizer
    with torch.no_grad():
        logits = merged(**tokenizer(TEXTS[:2], return_tensors="pt", padding=True)).logits.softmax(-1)
    labels = [merged.config.id2label[i] for i in range(logits.shape[1])]
    for row, scores in zip(logits.tolist(), expected):
        assert max(abs(row[i] - scores[label]) for i, label in enumerate(labels)) < 1e-4


def test_a_strategy_that_trains_the_base_is_refused_over_a_4bit_base(qpm, tiny_model, easy_data, tmp_path):
    from xft_core.config import load_config
    from xft_core.training import prepare

    bad = config(tiny_model, easy_data, tmp_path, "nf4", strategy="full", strategy_options={})
    with pytest.raises(ConfigError, match=r"Strategy 'full' cannot train over a quantized base.*base_dtype: nf4.*lora"):
        prepare(load_config(bad), pm=qpm)


def test_an_unknown_base_dtype_lists_the_quantizers_and_the_float_dtypes(qpm, tiny_model, easy_data, tmp_path):
    from xft_core.config import load_config
    from xft_core.training import prepare

    with pytest.raises(PluginError, match=r"base quantizer 'nf5' \(config key: training.base_dtype\)\. Available: nf4"
                                          r"(.|\n)*float dtypes: auto, float32, bfloat16, float16"):
        prepare(load_config(config(tiny_model, easy_data, tmp_path, "nf5")), pm=qpm)


def test_without_bitsandbytes_nf4_says_what_to_install(qpm, tiny_model, easy_data, tmp_path, monkeypatch):
    from xft_core.config import load_config
    from xft_core.training import prepare

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(Exception, match=r"pip install 'xft\[qlora\]'") as caught:
        prepare(load_config(config(tiny_model, easy_data, tmp_path, "nf4")), pm=qpm)
    assert "bitsandbytes" in str(caught.value)


def test_a_training_base_never_takes_the_cpu_kernel_that_drops_input_gradients():
    """bitsandbytes' AVX512-BF16 CPU kernel repacks a layer's weights on its first no-grad eval forward, after which
    the layer gives its input no gradient; a training run evaluates between steps, so its layers must never take it.
    On CPUs without AVX512-BF16 the kernel is off anyway and this passes trivially."""
    pytest.importorskip("bitsandbytes")
    import torch

    import xft_bnb

    bnb = xft_bnb.bitsandbytes()
    linear = torch.nn.Linear(128, 64, bias=False)
    layer = xft_bnb._linear4bit(bnb, linear, torch.bfloat16, "cpu", training=True)
    assert not getattr(layer, "support_avx512bf16_for_cpu", False)
    x = torch.randn(3, 128)
    layer.eval()
    with torch.no_grad():
        layer(x)  # what a dev evaluation does between training steps
    layer.train()
    x.requires_grad_(True)
    layer(x).float().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
