"""Model families that transformers ships without a token-classification class."""

from __future__ import annotations


def register_gemma3_token_classification() -> None:
    """transformers 5.24 has no token-classification class for `gemma3_text`; register its generic one.

    Idempotent and cheap after the first call. The `token-classification` head calls it before
    `AutoModelForTokenClassification.from_pretrained`, so any process that builds that head on a Gemma 3 text
    folder (training, serving, a plain script) finds the class.
    """
    from transformers import AutoModelForTokenClassification, Gemma3TextConfig
    from transformers.modeling_layers import GenericForTokenClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING
    from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel

    if Gemma3TextConfig in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING:
        return

    class Gemma3TextForTokenClassification(GenericForTokenClassification, Gemma3PreTrainedModel):
        config_class = Gemma3TextConfig
        input_modalities = ("text",)

    AutoModelForTokenClassification.register(Gemma3TextConfig, Gemma3TextForTokenClassification, exist_ok=True)
