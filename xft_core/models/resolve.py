"""Resolve a model reference to a local Hugging Face folder through the `xft_model_sources` plugins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xft_core.hooks.manager import PluginError, collect


def cache_dir() -> Path:
    """Where converted models and other caches live: $XFT_CACHE, else ~/.cache/xft."""
    return Path(os.environ.get("XFT_CACHE") or Path.home() / ".cache" / "xft")


def resolve_model(reference: str, pm: Any) -> Path:
    sources = sorted(collect(pm, "model_sources").values(), key=lambda p: -p.spec.priority)
    tried = []
    for provided in sources:
        folder = provided.spec.resolve(reference, cache_dir())
        if folder is not None:
            return Path(folder)
        tried.append(provided.spec.name)
    raise PluginError(
        f"Model '{reference}' (config key: model) was not recognised by any model source "
        f"(tried: {', '.join(tried) or 'none installed'}). Give a local folder with config.json, a .gguf file, "
        "or 'gemma3-270m' for the embedded default."
    )


def quiet_transformers() -> None:
    """transformers' load reports and shard bars would drown xft's own progress display."""
    import warnings

    from transformers.utils import logging as hf_logging

    # peft still calls this deprecated transformers property; the warning says nothing to an xft user
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # peft imports bitsandbytes wherever it is installed (xft[qlora]); on an AVX512-BF16 CPU bitsandbytes then tries
    # to fetch a kernel from the Hugging Face Hub and warns when it cannot, though its own kernels work
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    # right padding: a row's real tokens keep positions 0..n-1 whatever the batch, so its outputs do not depend on
    # what it is batched with (decoders such as Gemma ship left padding; generation pads prompts on the left itself)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        # decoder-only families often ship without a pad token; padding is masked, so EOS is safe to reuse
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
