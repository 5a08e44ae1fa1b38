"""Built-in strategy `lora`: low-rank adapters through peft, one shared adapter or one per language.

Adapters are saved in peft's own format (adapter_config.json + adapter_model.safetensors), so plain
`peft.PeftModel.from_pretrained(base, folder)` loads them; the task head trains alongside as a
`modules_to_save` module and travels inside the adapter file.
"""

from __future__ import annotations

from xft_core.hooks import StrategySpec, hookimpl
from xft_lora.options import AUTO_TARGETS, LoraOptions, auto_target_modules
from xft_lora.strategy import Lora

__all__ = ["AUTO_TARGETS", "Lora", "LoraOptions", "auto_target_modules"]


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="lora",
        options=LoraOptions,
        build=Lora,
        description="LoRA adapters (peft); r, alpha, dropout, target_modules (auto per family), DoRA, rsLoRA, top_layers; "
                    "over a 4-bit base with training.base_dtype: nf4 (QLoRA).",
        per_language=True,
        stackable=True,
        quantized_base=True,  # peft adapts bitsandbytes' 4-bit layers (training.base_dtype: nf4, QLoRA)
    )
