"""`MeanPoolClassifier`: a sequence classifier over the mean of a backbone's token states.

The `sequence-classification` head builds it for `task_options.pooling: mean`. transformers' own classes
read one token (an encoder's first, a decoder's last non-pad one); the masked mean over every non-pad token
is often steadier for small data and for decoders whose last token is punctuation.

It is a plain `PreTrainedModel` (backbone + dropout + `score` Linear), so peft treats it like any
transformers classifier: LoRA goes into the backbone, `score` is a `modules_to_save` head, `adapter_names`
mixes adapters within one batch, and the LoRA strategy saves it in peft's format.

Loading a saved LoRA adapter with plain peft: rebuild the same base first, then attach the adapter::

    from transformers import AutoConfig
    from peft import PeftModel
    from xft_classification.pooling import MeanPoolClassifier

    config = AutoConfig.from_pretrained(base_folder, num_labels=len(labels))   # labels: manifest "labels"
    base = MeanPoolClassifier.from_backbone(base_folder, config)
    model = PeftModel.from_pretrained(base, adapter_folder)                      # restores LoRA and `score`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel


class MeanPoolClassifier(PreTrainedModel):
    """AutoModel backbone -> masked mean over non-pad tokens -> dropout -> `score` Linear."""

    config_class = PretrainedConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True

    def __init__(self, config: Any, backbone: Any = None):
        import torch
        from transformers import AutoModel

        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config)
        hidden = config.get_text_config().hidden_size
        dropout = next((getattr(config, k) for k in ("classifier_dropout", "hidden_dropout_prob", "hidden_dropout")
                        if isinstance(getattr(config, k, None), float)), 0.1)
        self.dropout = torch.nn.Dropout(dropout)
        self.score = torch.nn.Linear(hidden, config.num_labels)
        torch.nn.init.normal_(self.score.weight, 0.0, getattr(config, "initializer_range", 0.02))
        torch.nn.init.zeros_(self.score.bias)
        self.score._is_hf_initialized = True  # post_init leaves initialised modules alone (the backbone's included)
        self.post_init()

    @classmethod
    def from_backbone(cls, model_path: str | Path, config: Any, **kwargs: Any) -> "MeanPoolClassifier":
        """The pretrained backbone in `model_path` (any AutoModel family) under a fresh `score` head.

        `config` carries num_labels / id2label; it is the backbone's own config class."""
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(model_path, config=config, **kwargs)
        return cls(config, backbone)

    def _init_weights(self, module: Any) -> None:
        """Only `score` is this class's own (initialised in __init__); the backbone keeps its weights."""

    def get_input_embeddings(self) -> Any:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: Any) -> None:
        self.backbone.set_input_embeddings(value)

    def forward(self, input_ids: Any = None, attention_mask: Any = None, inputs_embeds: Any = None,
                labels: Any = None, **kwargs: Any) -> Any:
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        for key in ("return_dict", "output_attentions", "output_hidden_states", "use_cache"):
            kwargs.pop(key, None)  # peft passes them; the output is always a SequenceClassifierOutput
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               use_cache=False, **kwargs).last_hidden_state
        if attention_mask is None:
            mask = torch.ones(states.shape[:2], device=states.device, dtype=torch.float32)
        else:
            mask = attention_mask.to(device=states.device, dtype=torch.float32)
        summed = (states.float() * mask.unsqueeze(-1)).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        logits = self.score(self.dropout(pooled.to(self.score.weight.dtype)))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
