"""Options of the `lora` strategy and the projection names it adapts by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

# Projection names by model family, most specific first: Llama/Gemma/Qwen2/Mistral, BERT/XLM-R, T5/mT5, GPT-2.
AUTO_TARGETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ("query", "key", "value", "dense"),
    ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    ("c_attn", "c_proj", "c_fc"),
)


@dataclass(frozen=True, kw_only=True)
class LoraOptions:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: list[str] | Literal["auto", "all-linear"] = "auto"
    use_dora: bool = False
    use_rslora: bool = False
    bias: Literal["none", "lora_only", "all"] = "none"
    # adapt only the top N transformer layers (0 = all): backward then stops at the lowest adapted layer,
    # which on a CPU cuts a training step by about the share of layers left out
    top_layers: int = 0
    # with top_layers: keep each training row's output of the frozen layers below the adapted ones after its first
    # pass and skip those layers afterwards (bit-for-bit the same forward; only for layers without dropout)
    cache_frozen_layers: bool = True

    def __post_init__(self):
        if self.top_layers < 0:
            raise ValueError(f"lora: top_layers must be >= 0 (0 = every layer), got {self.top_layers}")
        if self.r <= 0:
            raise ValueError(f"lora: r must be a positive integer, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora: alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora: dropout must be in [0, 1), got {self.dropout}")


def auto_target_modules(model: Any, exclude: Sequence[str] = ()) -> list[str]:
    """The attention and MLP projection names of this model's family (the first family whose names occur)."""
    import torch

    linear_names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(name == e or name.startswith(e + ".") for e in exclude):
            linear_names.add(name.rsplit(".", 1)[-1])
    for family in AUTO_TARGETS:
        found = [n for n in family if n in linear_names]
        if len(found) >= 2:
            return found
    raise ValueError(
        "lora: target_modules 'auto' found no known projection names in this model "
        f"(linear layers: {', '.join(sorted(linear_names)[:12])}). Set strategy_options.target_modules."
    )
