"""The training fast paths compute what the code they replace computes: the written-out RMSNorm (xft_core/models/
fast_paths.py), eager attention on CPUs, LoRA's update as one addmm (plugins/xft_lora/fused.py), the label words'
rows of the LM head (plugins/xft_verbalizer/model.py); and a training step reads nothing back from the device
unless it logs. Compared within tolerances (float32: 1e-5; bf16: its rounding), never bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data


def _grads(module, x, upstream):
    """(output, input grad, weight grads) of `module(x)` against `upstream`."""
    x = x.detach().clone().requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    out = module(x)
    out.backward(upstream)
    return out.detach(), x.grad.detach(), {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["gemma3", "llama"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("trainable", [False, True])
def test_written_out_rms_norm_equals_the_models_own(family, dtype, trainable):
    import torch
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from xft_core.models.fast_paths import fuse_rms_norms

    torch.manual_seed(0)
    dtype = getattr(torch, dtype)
    own = (Gemma3RMSNorm if family == "gemma3" else LlamaRMSNorm)(48, eps=1e-6)
    with torch.no_grad():
        own.weight.normal_(0.0, 0.5)
    own = own.to(dtype).requires_grad_(trainable)
    fused = type(own)(48, eps=1e-6).to(dtype)
    fused.load_state_dict(own.state_dict())
    fused.requires_grad_(trainable)
    assert fuse_rms_norms(fused) == 1 and fuse_rms_norms(fused) == 0, "installed once"
    x = torch.randn(3, 5, 48, dtype=dtype) * 3
    upstream = torch.randn(3, 5, 48, dtype=dtype)
    (out_a, dx_a, dw_a), (out_b, dx_b, dw_b) = _grads(own, x, upstream), _grads(fused, x, upstream)
    # forward: the same float32 arithmetic in the same order; backward: rounding of a different order (bf16: ~1e-2)
    assert torch.equal(out_a, out_b) if dtype == torch.float32 else torch.allclose(out_a, out_b, atol=1e-2, rtol=1e-2)
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(dx_a.float(), dx_b.float(), atol=tolerance, rtol=tolerance)
    assert set(dw_a) == set(dw_b) == ({"weight"} if trainable else set())
    for name in dw_a:
        assert torch.allclose(dw_a[name].float(), dw_b[name].float(), atol=tolerance * 10, rtol=tolerance)


def test_a_norm_of_an_unknown_family_is_left_alone():
    import torch

    from xft_core.models.fast_paths import fuse_rms_norms

    class SomeRMSNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(4))
            self.eps = 1e-6

    assert fuse_rms_norms(SomeRMSNorm()) == 0


def test_cpu_training_switches_to_eager_attention_with_the_same_outputs(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from xft_core.models.fast_paths import prepare_for_training

    model = AutoModelForCausalLM.from_pretrained(tiny_model("gemma3"))
    ids = torch.randint(3, 90, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    before = model(input_ids=ids, attention_mask=mask).logits
    assert model.config._attn_implementation == "sdpa"
    changed = prepare_for_training(model, "cpu")
    assert changed["eager_attention"] == 1 and changed["rms_norm"] > 0
    assert model.config._attn_implementation == "eager"
    after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before[mask.bool()], after[mask.bool()], atol=1e-5)
    gpu = AutoModelForCausalLM.from_pretrained(tiny_model("gemma3"))
    assert "eager_attention" not in prepare_for_training(gpu, "cuda") and gpu.config._attn_implementation == "sdpa"


def _lora(tiny_model, **options):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model("gemma3"))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                             init_lora_weights=False, **options))
    return model


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_fused_lora_update_equals_peft_forward_and_gradients(tiny_model, precision):
    import torch

    from xft_core.util.precision import autocast
    from xft_lora.fused import install

    peft_model, fused_model = _lora(tiny_model), _lora(tiny_model)
    assert install(list(fused_model.modules())) == 2 * 3  # q, v, up in each of the tiny model's 2 layers
    ids = torch.randint(3, 90, (2, 7))

    def run(model):
        model.zero_grad()
        with autocast(precision, "cpu"):
            logits = model(input_ids=ids).logits
        logits.float().square().mean().backward()
        return logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (a, grads_a), (b, grads_b) = run(peft_model), run(fused_model)
    tolerance = 1e-5 if precision == "no" else 5e-2
    assert torch.allclose(a, b, atol=tolerance, rtol=tolerance)
    assert set(grads_a) == set(grads_b) and len(grads_a) == 2 * 2 * 3  # A and B of each adapted layer
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=tolerance, rtol=tolerance * 5), name


def test_fused_lora_leaves_other_cases_to_peft(tiny_model):
    import torch

    from xft_lora.fused import install

    dora = _lora(tiny_model, use_dora=True)
    install(list(dora.modules()))
    reference = _lora(tiny_model, use_dora=True)
    ids = torch.randint(3, 90, (2, 7))
    assert torch.allclose(dora(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-6)
    with dora.disable_adapter():
        bare = dora(input_ids=ids).logits
    with reference.disable_adapter():
        assert torch.allclose(bare, reference(input_ids=ids).logits, atol=1e-6)


@pytest.mark.parametrize("missing", ["lora_variant", "lora_bias", "scaling"])
def test_fused_lora_is_not_installed_where_a_peft_internal_is_missing(tiny_model, missing):
    """A peft release that moves one of the internals the fused path reads keeps peft's own forward (same outputs)."""
    import torch

    from xft_lora.fused import install

    model, reference = _lora(tiny_model), _lora(tiny_model)
    for module in model.modules():
        if missing in vars(module):
            delattr(module, missing)
    assert install(list(model.modules())) == 0
    assert not any("forward" in vars(m) for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
    ids = torch.randint(3, 90, (2, 7))
    if missing == "scaling":  # peft's own forward needs it too: put it back to compare outputs
        return
    restored = {k: v for k, v in vars(reference.base_model.model.model.layers[0].self_attn.q_proj).items() if k == missing}
    for module in model.modules():
        if type(module).__name__ == "Linear" and hasattr(module, "lora_A") and restored:
            setattr(module, missing, dict(restored[missing]))
    assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-6)


def test_label_word_scores_and_their_gradients_equal_the_full_lm_head(tiny_model):
    import torch

    import xft_verbalizer.model as verbalizer
    from xft_verbalizer.model import VerbalizerModel

    torch.manual_seed(0)
    model = VerbalizerModel.from_lm(tiny_model("gemma3"), masked=False)
    ids = torch.randint(3, 90, (3, 8))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    words = torch.tensor([[11, 12, 13]] * 3)
    labels = torch.tensor([0, 2, 1])

    def run():
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, label_token_ids=words, labels=labels)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast, fast_grads = run()
    full_path = verbalizer._is_plain_linear
    verbalizer._is_plain_linear = lambda module: False
    try:
        full, full_grads = run()
    finally:
        verbalizer._is_plain_linear = full_path
    assert torch.allclose(fast, full, atol=1e-5)
    assert set(fast_grads) == set(full_grads)
    for name in fast_grads:
        assert torch.allclose(fast_grads[name], full_grads[name], atol=1e-5), name


def test_a_training_step_reads_nothing_from_the_device_unless_it_logs(tiny_model, tmp_path, pm, monkeypatch):
    """Every value the loop itself converts to a Python number (float(), int(), .item(), .tolist()) is a host sync
    on a GPU; steps that do not log must make none, and logged losses stay the mean since the last log."""
    import torch

    from xft_core.hooks.spec import hookimpl
    from xft_core.training import train

    reads: list[int] = []
    steps: list[tuple[int, bool]] = []
    loop_file = str(Path(sys.modules["xft_core.training.loop"].__file__))

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename == loop_file:
                reads.append(len(steps))
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("__float__", "__int__", "item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))

    class Steps:
        @hookimpl
        def xft_after_step(self, run, step, logs):
            steps.append((step, "loss" in logs))

    pm.register(Steps(), name="steps")
    data = write_sentiment_data(tmp_path / "data", sizes={"en": 24}, vocabulary=2)
    run = train(tiny_config(tiny_model("gemma3"), data, tmp_path / "out", training={"max_steps": 7, "log_every": 3}),
                pm=pm, progress=False)
    assert steps == [(1, False), (2, False), (3, True), (4, False), (5, False), (6, True), (7, True)]
    # a read counts the after_steps before it: those logging steps 3, 6 and 7 (2, 5, 6), and the run's end (7)
    assert reads and set(reads) <= {2, 5, 6, 7}, f"reads before after_step of steps {sorted({r + 1 for r in reads})}"
    logged = [r["loss"] for r in run.history if "loss" in r]
    assert len(logged) == 3 and all(value > 0 for value in logged)
