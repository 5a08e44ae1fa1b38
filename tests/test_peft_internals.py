"""The peft internals xft_lora relies on for speed, and the fallbacks taken when a peft release moves them.

The adapter switch writes `_active_adapter` into each layer's `__dict__` (xft_lora/switch.py); mixed batches replace
`Linear._mixed_batch_forward` and read `VARIANT_KWARG_KEYS` and `lora_variant` (xft_lora/mixed.py). Each test takes
one of them away, as a peft release could, and checks that the fallback is taken and gives peft's own outputs.
pyproject.toml pins peft and transformers to the versions these tests ran on; widening the pins means running them
on the new versions.
"""

from __future__ import annotations

import pytest

NAMES = ["en", "de"]


@pytest.fixture()
def served(tiny_model):
    """A tiny Gemma 3 classifier with two LoRA adapters (random weights) and their own head copies, as attach leaves
    it; a batch; and each adapter's logits through peft's own set_adapter (the reference)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_model("gemma3")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, pad_token_id=tokenizer.pad_token_id)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, modules_to_save=["score"])
    model = get_peft_model(base, config, adapter_name=NAMES[0])
    model.add_adapter(NAMES[1], config)
    with torch.no_grad():  # the head copies differ too
        for name, parameter in model.named_parameters():
            if "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter))
    model.eval()
    batch = tokenizer(["phone good", "camera bad", "Telefon gut", "Kamera schlecht"], padding=True, return_tensors="pt")
    reference = {}
    for name in NAMES:
        model.set_adapter(name, inference_mode=True)
        reference[name] = logits(model, batch)
    assert (reference["en"] - reference["de"]).abs().max() > 1e-3, "two adapters, two answers"
    return model, batch, reference


def logits(model, batch, **kwargs):
    import torch

    with torch.no_grad():
        return model(**batch, **kwargs).logits


def lora():
    from xft_lora import Lora, LoraOptions

    return Lora(LoraOptions())  # not trained by this instance: `activate` is the inference switch


def test_the_fast_switch_is_checked_once_and_gives_peft_s_answers(served):
    model, batch, reference = served
    strategy = lora()
    for name in ["de", "en", "de"]:
        strategy.activate(model, name)
        assert (logits(model, batch) - reference[name]).abs().max() < 1e-6, name
    assert strategy._layers[2] is True, "the fast path was checked against peft's public view and kept"


class _Moved:
    """A peft whose layers keep the active adapter under another name (`_active_adapter` is now a property over it):
    what the fast switch writes into `__dict__` is never read."""

    def __get__(self, module, owner=None):
        return self if module is None else module.__dict__["_moved_active"]

    def __set__(self, module, value):
        module.__dict__["_moved_active"] = value


def test_the_switch_falls_back_to_set_adapter_when_peft_moves_active_adapter(served, monkeypatch):
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import AuxiliaryTrainingWrapper

    from xft_lora.switch import fast_switch

    model, batch, reference = served
    layers = [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]
    for cls in (BaseTunerLayer, AuxiliaryTrainingWrapper):
        monkeypatch.setattr(cls, "_active_adapter", _Moved(), raising=False)
    for module in layers:
        module.__dict__["_moved_active"] = module.__dict__["_active_adapter"]
    assert not fast_switch(layers, "en", verify=True), "the check sees that peft no longer reads what was written"

    strategy = lora()
    for name in ["en", "de", "en"]:
        strategy.activate(model, name)
        assert (logits(model, batch) - reference[name]).abs().max() < 1e-6, name
    assert strategy._layers[2] is False, "peft's set_adapter was used"


def test_the_switch_falls_back_when_a_head_copy_lacks_check_set_adapter(served, monkeypatch):
    """A peft whose head copies answer `check_set_adapter` no more (peft's own switch uses a new name for it)."""
    from peft.utils import AuxiliaryTrainingWrapper, ModulesToSaveWrapper

    model, batch, reference = served
    strategy = lora()
    monkeypatch.setattr(ModulesToSaveWrapper, "_renamed_check", ModulesToSaveWrapper.check_set_adapter, raising=False)
    monkeypatch.delattr(ModulesToSaveWrapper, "check_set_adapter")  # the base class's raises NotImplementedError

    def set_auxiliary(model, adapter_name, inference_mode=False):  # that peft's own auxiliary switch
        for module in model.modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                wanted = module._renamed_check(adapter_name)
                if wanted is not None:
                    module.set_adapter(wanted, inference_mode=inference_mode)

    monkeypatch.setattr("peft.tuners.tuners_utils._set_adapter", set_auxiliary)
    for name in ["de", "en"]:
        strategy.activate(model, name)
        assert (logits(model, batch) - reference[name]).abs().max() < 1e-6, name
    assert strategy._layers[2] is False, "peft's set_adapter was used"


@pytest.mark.parametrize("missing", ["VARIANT_KWARG_KEYS", "_mixed_batch_forward", "lora_variant"])
def test_mixed_batches_fall_back_to_peft_s_path_when_an_internal_is_missing(served, missing, monkeypatch):
    import peft.tuners.lora.layer as lora_layer

    from xft_lora.mixed import install

    model, batch, reference = served
    layers = [m for m in model.modules() if type(m) is lora_layer.Linear]
    names = ["en", "en", "de", "de"]
    expected = logits(model, batch, adapter_names=names)  # peft's own path, nothing installed yet
    assert (expected[:2] - reference["en"][:2]).abs().max() < 1e-5 and (expected[2:] - reference["de"][2:]).abs().max() < 1e-5

    if missing == "VARIANT_KWARG_KEYS":
        monkeypatch.delattr(lora_layer, "VARIANT_KWARG_KEYS")
    elif missing == "_mixed_batch_forward":
        monkeypatch.setattr(lora_layer.Linear, "_mixed_batch_forward", None)
    else:
        for layer in layers:
            monkeypatch.delattr(layer, "lora_variant")
    assert install(layers) == 0
    assert not any("_mixed_batch_forward" in layer.__dict__ for layer in layers), "no layer got the sliced path"
    monkeypatch.undo()  # peft's own forward reads them too: the peft that lacks one has its own code for that
    assert (logits(model, batch, adapter_names=names) - expected).abs().max() < 1e-6, "peft's path, untouched"
    assert install(layers) == len(layers) > 0, "with every internal in place, the sliced path is installed"
    assert (logits(model, batch, adapter_names=names) - expected).abs().max() < 1e-5
    for layer in layers:
        layer.__dict__.pop("_mixed_batch_forward", None)
