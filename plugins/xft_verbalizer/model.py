"""`VerbalizerModel`: a language model that classifies by scoring label words with its own LM head.

A decoder reads the prompt and the label words compete as its next token; an encoder fills a mask token in the
prompt. The model runs its body over the whole prompt but its LM head only at one position per row, and keeps
the logits of each label word's first token: the classifier is the LM head the model was pretrained with, the
same in every language, which is why this transfers across languages much better than a new classification
layer (Zhao & Schütze 2021; Ma et al. 2023).

It is a plain `PreTrainedModel` around an `AutoModelForCausalLM` / `AutoModelForMaskedLM`, so peft treats it like
any transformers model: LoRA goes into the body, rows of different adapters mix in one forward (`adapter_names`),
and soft prompts (prompt tuning) come in as `inputs_embeds` with a longer attention mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel

from xft_core.util.lm import load_with_lm_head


class VerbalizerModel(PreTrainedModel):
    """LM body -> hidden state at the answer position -> LM head -> logits of the label words."""

    config_class = PretrainedConfig
    base_model_prefix = "lm"
    supports_gradient_checkpointing = True
    # attention runs inside the wrapped LM, which chose its own implementation
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: Any, lm: Any = None, *, masked: bool = False, loss: str = "label_words"):
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        super().__init__(config)
        self.lm = lm if lm is not None else (AutoModelForMaskedLM if masked else AutoModelForCausalLM).from_config(config)
        self.masked = masked
        self.loss_kind = loss
        self.post_init()

    @classmethod
    def from_lm(cls, model_path: str | Path, *, masked: bool, loss: str = "label_words") -> VerbalizerModel:
        """The pretrained LM in `model_path` with its own LM head; an encoder without MLM head weights is an error."""
        lm = load_with_lm_head(model_path, masked=masked, who="prompt-classification",
                               why="label words need the model's own LM head", hint=", or task: sequence-classification")
        return cls(lm.config, lm, masked=masked, loss=loss)

    def _init_weights(self, module: Any) -> None:
        """Nothing here is new: every weight is the pretrained LM's."""

    def get_input_embeddings(self) -> Any:
        return self.lm.get_input_embeddings()

    def set_input_embeddings(self, value: Any) -> None:
        self.lm.set_input_embeddings(value)

    def _body_and_head(self) -> tuple[Any, Any]:
        body = getattr(self.lm, self.lm.base_model_prefix)
        heads = [module for name, module in self.lm.named_children() if name != self.lm.base_model_prefix]
        if len(heads) != 1:
            raise ValueError(f"prompt-classification: cannot tell the LM head of {type(self.lm).__name__} "
                             f"(children besides the body: {[n for n, _ in self.lm.named_children()]})")
        return body, heads[0]

    def forward(self, input_ids: Any = None, attention_mask: Any = None, inputs_embeds: Any = None, labels: Any = None,
                label_token_ids: Any = None, answer_positions: Any = None, **kwargs: Any) -> Any:
        """`label_token_ids` (rows x labels): the token each label is scored by, per row (label words may differ
        by language); `answer_positions`: the mask token's position for encoders (decoders answer after the
        last real token); `labels`: the label index per row."""
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        for key in ("return_dict", "output_attentions", "output_hidden_states", "use_cache", "num_items_in_batch"):
            kwargs.pop(key, None)  # peft and the Trainer pass them; the output is always a SequenceClassifierOutput
        body, head = self._body_and_head()
        extra = {} if self.masked else {"use_cache": False}
        states = body(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **extra,
                      **kwargs).last_hidden_state
        rows = torch.arange(states.shape[0], device=states.device)
        if self.masked:
            if answer_positions is None:
                raise ValueError("prompt-classification on an encoder needs answer_positions (the mask token's position)")
            if input_ids is None:
                raise ValueError("prompt-classification on an encoder takes input_ids (soft prompts are for decoders)")
            position = answer_positions.to(states.device)
        elif attention_mask is not None:
            mask = attention_mask.to(states.device)
            position = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # the last real token, left or right padded
        else:
            position = torch.full_like(rows, states.shape[1] - 1)
        if label_token_ids is None:
            raise ValueError("prompt-classification: label_token_ids (rows x labels) must be given")
        label_token_ids = label_token_ids.to(states.device)
        hidden = states[rows, position]
        cap = getattr(self.config.get_text_config(), "final_logit_softcapping", None)
        logits = None
        if self.loss_kind == "vocabulary" or not _is_plain_linear(head):
            logits = head(hidden.unsqueeze(1))[:, 0, :]
            if cap:
                logits = torch.tanh(logits / cap) * cap
            scores = logits.gather(1, label_token_ids)
        else:  # only the label words' rows of the LM head: rows x labels dot products, not rows x vocabulary
            scores = label_word_scores(head, hidden, label_token_ids)
            if cap:
                scores = torch.tanh(scores / cap) * cap
        loss = None
        if labels is not None:
            labels = labels.to(scores.device)
            if self.loss_kind == "vocabulary":  # the label word against every token of the vocabulary
                target = label_token_ids.gather(1, labels.view(-1, 1)).view(-1)
                loss = torch.nn.functional.cross_entropy(logits.float(), target)
            else:  # against the other label words only
                loss = torch.nn.functional.cross_entropy(scores.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=scores)


def _is_plain_linear(module: Any) -> bool:
    import torch

    return type(module) is torch.nn.Linear


def label_word_scores(head: Any, hidden: Any, label_token_ids: Any) -> Any:
    """`head(hidden).gather(1, label_token_ids)` without the other rows of the vocabulary: the LM head's weight rows of
    the label words (rows x labels x hidden) against each row's hidden state. On Gemma 3 (262,144 tokens) the full
    head is 168 M multiply-adds per row, the label words' rows of 7 topics 4,480."""
    import torch

    weight = head.weight[label_token_ids]  # rows x labels x hidden
    scores = torch.matmul(weight, hidden.unsqueeze(-1)).squeeze(-1)
    if head.bias is not None:
        scores = scores + head.bias[label_token_ids]
    return scores
