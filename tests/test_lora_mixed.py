"""Mixed-adapter batches that slice instead of gather: the router groups each forward's rows by adapter
(`grouped_by_adapter`), and the LoRA strategy runs each group as one slice in every LoRA layer
(`xft_lora.mixed`). The results must equal peft's own gather/scatter path, grouped or not."""

from __future__ import annotations

import pytest

from xft_core.inference.forward import grouped_by_adapter


def test_grouping_keeps_each_forward_and_makes_each_adapters_rows_adjacent():
    slots = ["a", "b", "a", "c", "b", "a", "c", "c", "b"]
    order = grouped_by_adapter(slots, 4)
    assert sorted(order) == list(range(len(slots)))
    forwards = [order[i : i + 4] for i in range(0, len(order), 4)]
    # the same rows share a forward as before (so length grouping holds) ...
    assert [sorted(f) for f in forwards] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    # ... and inside it, one adapter's rows are adjacent, in order of first appearance, stable
    assert [[slots[i] for i in f] for f in forwards] == [["a", "a", "b", "c"], ["b", "a", "c", "c"], ["b"]]
    assert forwards[0] == [0, 2, 1, 3]
    assert grouped_by_adapter([], 4) == []


def test_runs_of_names():
    from xft_lora.mixed import runs

    assert runs(["a", "a", "b", "__base__"]) == [("a", 0, 2), ("b", 2, 3), ("__base__", 3, 4)]
    assert runs(["a"]) == [("a", 0, 1)]
    assert runs(["a", "b", "a"]) is None  # not grouped: peft's own path


@pytest.fixture(scope="module")
def two_adapters(tiny_model):
    """A tiny Gemma 3 classifier with two LoRA adapters of random (non-zero) weights, and a batch of 6 rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_model("gemma3")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3,
                                                              pad_token_id=tokenizer.pad_token_id)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config, adapter_name="en")
    model.add_adapter("de", config)
    model.eval()
    batch = tokenizer(["phone good", "camera bad", "book great", "Telefon gut", "Kamera", "Buch toll"],
                      padding=True, return_tensors="pt")
    return model, batch


def logits(model, batch, names):
    import torch

    with torch.no_grad():
        return model(**batch, adapter_names=names).logits


@pytest.mark.parametrize("names", [
    ["en", "en", "de", "de", "__base__", "__base__"],  # grouped: sliced
    ["en", "de", "en", "__base__", "de", "en"],  # scattered: peft's own path
    ["de"] * 6,
])
def test_the_sliced_path_equals_peft_and_is_taken_only_for_grouped_rows(two_adapters, names, monkeypatch):
    from peft.tuners.lora.layer import Linear

    from xft_lora.mixed import install, runs

    model, batch = two_adapters
    layers = [m for m in model.modules() if type(m) is Linear]
    for layer in layers:
        layer.__dict__.pop("_mixed_batch_forward", None)
    expected = logits(model, batch, names)  # peft, untouched
    # every row's own adapter alone, for reference: the mixed batch must not mix anything across rows
    for name in set(names) - {"__base__"}:
        alone = logits(model, batch, [name] * len(names))
        rows = [i for i, n in enumerate(names) if n == name]
        assert (expected[rows] - alone[rows]).abs().max() < 1e-5

    assert install(list(model.modules())) == len(layers) > 0
    calls = []
    original = Linear._mixed_batch_forward
    monkeypatch.setattr(Linear, "_mixed_batch_forward",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    got = logits(model, batch, names)
    assert (got - expected).abs().max() < 1e-5
    # grouped rows never reach peft's gather path; scattered ones always do
    assert bool(calls) == (runs(names) is None)
    for layer in layers:
        layer.__dict__.pop("_mixed_batch_forward", None)


def test_the_sliced_path_under_bf16_autocast_matches_peft_to_bf16_rounding(two_adapters):
    """Under bf16 autocast (precision auto on a bf16 CPU or a GPU) the sliced path casts the adapter matrices to the
    activations' dtype and adds in place; peft casts the activations to float32 and back. Same result up to bf16
    rounding, and the grouped rows still never mix."""
    import torch
    from peft.tuners.lora.layer import Linear

    from xft_lora.mixed import install

    model, batch = two_adapters
    layers = [m for m in model.modules() if type(m) is Linear]
    names = ["en", "en", "de", "de", "__base__", "__base__"]
    for layer in layers:
        layer.__dict__.pop("_mixed_batch_forward", None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = logits(model, batch, names).float()
        assert install(layers) == len(layers)
        got = logits(model, batch, names).float()
        alone = logits(model, batch, ["de"] * 6).float()
    for layer in layers:
        layer.__dict__.pop("_mixed_batch_forward", None)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= 0.02 * scale + 1e-3
    assert (got[2:4] - alone[2:4]).abs().max().item() <= 0.02 * scale + 1e-3
    assert (got[:2] - alone[:2]).abs().max().item() > 0  # the en rows did not take de's update
