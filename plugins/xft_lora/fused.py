"""LoRA's update in two matmuls, the second fused with the add: `addmm(base_out, x A^T, B^T, alpha=scaling)`.

peft's `Linear.forward` computes `result + lora_B(lora_A(dropout(x.to(A.dtype)))) * scaling`. Under bf16 autocast
with float32 adapter weights (what training keeps, so the optimizer updates full-precision weights) that casts the
whole input to float32 and autocast casts it straight back to bf16 for `lora_A`, then pays a multiply and an add
over the whole output, and the same again in the backward: four passes over an activation per adapted layer. Here
the small adapter matrices are cast to the input's dtype instead (a no-op without autocast in float32; what
autocast would do anyway in bf16) and the scale and the add ride on the second matmul. Same result up to rounding
(one rounding of the sum instead of three). On Gemma 3 270M, a full-depth LoRA training step in bf16 on one core
of a CPU with AMX took 1.20x less CPU time with it (docs/benchmarks.md, "CPU with bf16/AMX").

Only the plain case takes this path: one active adapter, not merged, not disabled, no mixed batch, no variant
(DoRA, ...), no LoRA bias; everything else goes to peft's own method unchanged.
"""

from __future__ import annotations

import types
from typing import Any, Sequence


def fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """peft's `lora.Linear.forward` for the plain case, with the update fused into one `addmm`."""
    import torch
    import torch.nn.functional as F

    active = self.active_adapters
    if (len(active) != 1 or self.disable_adapters or self.merged or kwargs.get("adapter_names") is not None
            or args or kwargs):
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    if name not in self.lora_A:  # an adapter that does not adapt this layer: the base alone
        return self.base_layer(x)
    if name in self.lora_variant or self.lora_bias.get(name):
        return type(self).forward(self, x)
    result = self.base_layer(x)
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    hidden = F.linear(self.lora_dropout[name](x), a.to(x.dtype))
    flat = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]),
                       b.t().to(hidden.dtype), alpha=self.scaling[name])
    return flat.view(result.shape).to(result.dtype)


INTERNALS = ("lora_A", "lora_B", "lora_dropout", "scaling", "lora_variant", "lora_bias")  # by adapter name


def _mapping(value: Any) -> bool:
    """A dict or ModuleDict: what peft keys by adapter name."""
    return hasattr(value, "__getitem__") and hasattr(value, "__contains__") and hasattr(value, "keys")


def install(layers: Sequence[Any]) -> int:
    """Give each peft LoRA `Linear` among `layers` the fused forward (an attribute of that instance, so the class
    and every other model stay as peft made them). Returns how many layers have it.

    The path reads the peft internals in `INTERNALS` (and `active_adapters`, `disable_adapters`, `merged`); a layer
    of a peft release that lacks one keeps peft's own forward, slower and the same (tests/test_fast_paths.py)."""
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:
        return 0
    count = 0
    for layer in layers:
        if type(layer) is Linear and all(_mapping(getattr(layer, name, None)) for name in INTERNALS) \
                and all(hasattr(layer, name) for name in ("active_adapters", "disable_adapters", "merged")):
            if layer.__dict__.get("forward") is None:
                layer.forward = types.MethodType(fused_forward, layer)
            count += 1
    return count
