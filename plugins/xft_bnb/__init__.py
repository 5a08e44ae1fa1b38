"""Built-in plugin `xft_bnb`: a 4-bit frozen base through bitsandbytes (QLoRA), `training.base_dtype: nf4`.

Every linear layer of the base becomes a bitsandbytes `Linear4bit`: 4-bit NormalFloat weights in blocks of 64
with double-quantized scales (Dettmers et al. 2023), dequantized on the fly into the run's compute dtype. Left as
they were: the task head's modules (`keep`), the output embeddings (an LM head, which label words and generation
score with) and any linear layer tied to the input embeddings. LoRA then trains on top through peft, which adapts
`Linear4bit` layers itself; nothing of the base trains. bitsandbytes >= 0.45 runs these layers on CPUs too.

Optional: `pip install 'xft[qlora]'`. Without it the name `nf4` is still known, and asking for it says what to
install.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from xft_core.hooks import QuantizerSpec, hookimpl

INSTALL = "pip install 'xft[qlora]' (bitsandbytes >= 0.45; it runs 4-bit layers on CPUs and GPUs)"
BLOCK = 64  # bitsandbytes' default block of weights sharing one scale


def bitsandbytes() -> Any:
    """The bitsandbytes module, or an error saying how to get it."""
    try:
        quiet = logging.getLogger("bitsandbytes")
        level = quiet.level
        # on an AVX512-BF16 CPU it tries to fetch a faster kernel from the Hugging Face Hub and warns when it cannot;
        # its own kernels work without it
        quiet.setLevel(logging.ERROR)
        try:
            import bitsandbytes as bnb
        finally:
            quiet.setLevel(level)
    except ImportError as exc:
        raise ImportError(f"training.base_dtype nf4 needs bitsandbytes, which is not installed ({exc}): {INSTALL}") from None
    return bnb


def to_nf4(model: Any, *, keep: Sequence[str] = (), compute_dtype: Any = None, device: Any = None,
           training: bool = False) -> int:
    """Replace `model`'s linear layers by NF4 `Linear4bit` layers in place (see the module's docstring for what
    stays); returns how many were replaced. `training`: the model trains (see `_linear4bit` on the CPU kernel)."""
    import torch

    bnb = bitsandbytes()
    compute_dtype = compute_dtype or torch.float32
    spared = {id(module.weight) for module in _spared(model)}
    replaced = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if (type(child) is not torch.nn.Linear or id(child.weight) in spared
                    or any(name == k or name.startswith(k + ".") or f".{k}." in f".{name}." for k in keep)):
                continue
            setattr(parent, child_name, _linear4bit(bnb, child, compute_dtype, device, training))
            replaced += 1
    if replaced:
        model.is_loaded_in_4bit = True  # peft's signal to adapt the Linear4bit layers with its bnb LoRA layers
    return replaced


def _spared(model: Any) -> list[Any]:
    """Output embeddings of every (sub)model, and modules sharing the input embeddings' weight."""
    spared = []
    for module in model.modules():
        for getter in ("get_output_embeddings", "get_input_embeddings"):
            try:
                found = getattr(module, getter)() if callable(getattr(module, getter, None)) else None
            except (NotImplementedError, AttributeError, TypeError):
                found = None
            if found is not None and getattr(found, "weight", None) is not None:
                spared.append(found)
    return spared


def _linear4bit(bnb: Any, linear: Any, compute_dtype: Any, device: Any, training: bool) -> Any:
    """One NF4 layer for `linear`. bitsandbytes' fast CPU kernel (AVX512-BF16) repacks a layer's weights the first
    time it runs in eval mode without gradients, and a repacked layer then gives no gradient to its input in
    training (checked with bitsandbytes 0.50: the input's grad stays None), so a training run's evaluation would
    silently cut the backward through every LoRA layer below. Training models never take it; served ones do where
    the shapes allow it (rows a multiple of 32, columns of the block), since smaller layers fail there."""
    import torch

    target = torch.device(device) if device is not None else linear.weight.device
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                              quant_storage=torch.uint8, device="meta")
    layer.weight = bnb.nn.Params4bit(linear.weight.data.float(), requires_grad=False, quant_type="nf4",
                                     blocksize=BLOCK, compress_statistics=True, quant_storage=torch.uint8)
    if linear.bias is not None:
        layer.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
    fits = linear.out_features % 32 == 0 and linear.in_features % BLOCK == 0
    if hasattr(layer, "support_avx512bf16_for_cpu"):
        layer.support_avx512bf16_for_cpu = bool(layer.support_avx512bf16_for_cpu and fits and not training)
    return layer.to(target)  # quantizes here


@hookimpl
def xft_base_quantizers():
    yield QuantizerSpec(name="nf4", quantize=to_nf4, mergeable=False,
                        description="4-bit NormalFloat base (QLoRA) through bitsandbytes; needs xft[qlora]")
