"""Loading a pretrained language model together with its own LM head, for heads that score with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.util.errors import UserError


def load_with_lm_head(model_path: str | Path, *, masked: bool, who: str, why: str, hint: str = "") -> Any:
    """The model in `model_path` as a masked LM (encoders) or causal LM (decoders), refusing a checkpoint whose LM
    head weights are missing (transformers would start them at random without a word). `who` names the task head,
    `why` says what needs the head, `hint` adds what to do instead."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    model, info = auto.from_pretrained(model_path, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
    if missing:
        raise UserError(f"{who}: {model_path} has no trained {'masked-' if masked else ''}LM head (missing "
                         f"{', '.join(sorted(missing)[:3])}); {why}. Use a checkpoint saved with its LM head{hint}.")
    return model
