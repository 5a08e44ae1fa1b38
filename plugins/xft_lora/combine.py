"""Merging attached LoRA adapters into a new one: `Lora.combine(model, {adapter: weight}, name)`.

The new adapter's update of every layer is exactly the weighted sum of the members' updates,
sum_i w_i * s_i * B_i A_i (s_i the member's scaling), written as one LoRA of the summed rank: A is the members'
A matrices stacked (each times w_i s_i), B their B matrices side by side, scaling 1 (peft's `cat` combination).
Nothing is approximated, so a merge of one adapter with weight 1 computes what that adapter computes, and the
result is a plain LoRA adapter that `save` writes and plain peft loads.

Done by hand rather than with peft's `add_weighted_adapter`, which refuses adapters that each carry a copy of a
task head (`modules_to_save`, the classification head): here each head copy of the new adapter becomes the
weighted average of the members' copies (weights normalised to sum 1; a member without a copy contributes the
base module). DoRA magnitudes do not combine linearly and are refused.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping


def combine(model: Any, weights: Mapping[str, float], name: str) -> Any:
    """Add adapter `name` to `model` (a PeftModel carrying every adapter of `weights`); returns the model."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    members = list(weights)
    configs = getattr(model, "peft_config", {})
    missing = [m for m in members if m not in configs]
    if not members or missing:
        raise KeyError(f"lora: cannot combine {', '.join(missing) or 'no adapters'}: not attached "
                       f"(attached: {', '.join(configs) or 'none'})")
    if name in configs:
        raise ValueError(f"lora: an adapter named '{name}' is already attached")
    config = _combined_config([configs[m] for m in members], members)
    model.add_adapter(name, config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                if any(m in module.lora_embedding_A for m in members):
                    raise ValueError("lora: combining adapters of embedding layers is not supported")
                present = [m for m in members if m in module.lora_A]
                target_a, target_b = module.lora_A[name].weight, module.lora_B[name].weight
                target_a.zero_()
                target_b.zero_()
                if not present:  # a layer only some other adapter's pattern reaches: no update
                    continue
                a = torch.cat([module.lora_A[m].weight * (weights[m] * module.scaling[m]) for m in present])
                b = torch.cat([module.lora_B[m].weight for m in present], dim=1)
                target_a[: a.shape[0]] = a.to(target_a.dtype)
                target_b[:, : b.shape[1]] = b.to(target_b.dtype)
            elif isinstance(module, ModulesToSaveWrapper) and name in module.modules_to_save:
                _average_head(module, weights, name)
    model.eval()
    return model


def _combined_config(configs: list[Any], members: list[str]) -> Any:
    from dataclasses import replace

    dora = [m for m, c in zip(members, configs) if c.use_dora]
    if dora:
        raise ValueError(f"lora: DoRA adapters ({', '.join(dora)}) cannot be combined: their magnitude vectors do not "
                         "add up; serve the language with an ensemble instead")
    targets = [c.target_modules for c in configs]
    if all(isinstance(t, (list, set, tuple)) for t in targets):
        union: Any = sorted(set().union(*[set(t) for t in targets]))
    elif all(t == targets[0] for t in targets):
        union = targets[0]
    else:
        raise ValueError(f"lora: adapters {', '.join(members)} name their target modules in different forms "
                         f"({', '.join(map(repr, targets))}); they cannot be combined")
    layers = [c.layers_to_transform for c in configs]
    rank = sum(max([c.r, *c.rank_pattern.values()]) if c.rank_pattern else c.r for c in configs)
    heads = sorted(set().union(*[set(c.modules_to_save or ()) for c in configs]))
    return replace(copy.deepcopy(configs[0]), r=rank, lora_alpha=rank, use_rslora=False, rank_pattern={},
                   alpha_pattern={}, target_modules=union, inference_mode=True, modules_to_save=heads or None,
                   layers_to_transform=layers[0] if all(x == layers[0] for x in layers) else None)


def _average_head(wrapper: Any, weights: Mapping[str, float], name: str) -> None:
    """The new adapter's copy of a task-head module: the members' copies averaged (the base module where a member
    has none), with the weights normalised to sum 1."""
    total = sum(weights.values())
    target = wrapper.modules_to_save[name]
    sources = {m: wrapper.modules_to_save[m] if m in wrapper.modules_to_save else wrapper.original_module
               for m in weights}
    states = {m: module.state_dict() for m, module in sources.items()}
    merged = {}
    for key, value in target.state_dict().items():
        if value.is_floating_point():
            merged[key] = sum(states[m][key].to(value.dtype) * (w / total) for m, w in weights.items())
        else:
            merged[key] = states[next(iter(weights))][key]
    target.load_state_dict(merged)
