"""Base models: a reference from the config resolved to a local Hugging Face folder through the model-source hook."""

from xft_core.models.resolve import (  # noqa: F401
    cache_dir,
    load_tokenizer,
    quiet_transformers,
    resolve_model,
)
