"""A quantized frozen base (`training.base_dtype: nf4`, QLoRA): the quantizer a plugin declares, applied to a model
the head built, in training and wherever a package's base is loaded (router, evaluation, export).

The engine only looks the name up (`xft_base_quantizers`) and calls it; the bitsandbytes surgery lives in the
plugin that declares it (`plugins/xft_bnb`), and LoRA on top is the strategy's as ever (peft adapts quantized
layers itself)."""

from __future__ import annotations

from typing import Any, Sequence

from xft_core.hooks import QuantizerSpec
from xft_core.hooks.manager import get_plugin_manager, get_spec

# training.base_dtype values that are a plain torch dtype (or follow the precision), not a quantizer's name
FLOAT_DTYPES = ("auto", "float32", "bfloat16", "float16")


def base_quantizer(name: str | None, pm: Any = None, *, key: str = "training.base_dtype") -> QuantizerSpec | None:
    """The quantizer `name` names (None for a float dtype); an unknown name lists the float dtypes and the
    quantizers installed."""
    if not name or name in FLOAT_DTYPES:
        return None
    from xft_core.hooks import PluginError

    try:
        spec: QuantizerSpec = get_spec(pm or get_plugin_manager(), "base_quantizers", name, config_key=key)
    except PluginError as exc:
        raise PluginError(f"{exc}\nOr one of the float dtypes: {', '.join(FLOAT_DTYPES)}.") from None
    return spec


def quantize_base(spec: QuantizerSpec, model: Any, keep: Sequence[str], precision: str, device: Any, *,
                  training: bool) -> int:
    """Quantize `model`'s frozen base in place with `spec`, computing in the run's precision (bf16/fp16 under
    autocast, else float32), on `device`, for training (gradients flow through the base) or serving; returns how
    many layers were replaced (0 is an error: nothing to quantize means the quantizer does not know this model)."""
    import torch

    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    count = spec.quantize(model, keep=tuple(keep), compute_dtype=compute, device=device, training=training)
    if not count:
        raise ValueError(f"base_dtype {spec.name}: no layer of {type(model).__name__} could be quantized")
    return count
