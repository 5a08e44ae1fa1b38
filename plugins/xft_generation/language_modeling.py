"""Built-in task head `language-modeling`: the model's own pretraining objective on unlabelled text.

What MAD-X language adapters are trained with (strategy `madx`; Pfeiffer et al. 2020): one LoRA adapter per
language (`strategy: lora, adapters: per_language`) learns that language's text. Rows need only a text field
(default `text`); every other field, labels included, is ignored, so the data files of a classification task
train it as they are.

Decoders (Gemma 3, Llama, Qwen2) learn every next token (causal LM, each text ending in EOS); encoders (BERT,
XLM-R) learn masked tokens (masked LM: 15% of the non-special tokens, of which 80% become the mask token, 10% a
random token, 10% stay). Masks are drawn from a generator seeded by `seed` and the batch's own tokens, so a batch
is masked the same way whenever it is drawn (a resumed run sees the batches it would have seen) while different
batches get different masks. An encoder saved without its masked-LM head weights is refused.

Prediction returns the mean token loss per row (`loss`, `tokens`, `perplexity`); the metric is corpus
perplexity, exp(total loss / total tokens), where lower is better.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from xft_core.hooks import ROW_LANGUAGE, MetricSpec, RowFields, hookimpl
from xft_core.util.lm import load_with_lm_head

__all__ = ["LanguageModeling", "LanguageModelingOptions", "perplexity"]

IGNORE = -100  # label of tokens that carry no loss (padding; unmasked tokens for encoders)


@dataclass(frozen=True, kw_only=True)
class LanguageModelingOptions:
    text_field: str = "text"
    model_type: Literal["auto", "causal", "masked"] = "auto"  # auto: causal for decoders, masked for encoders
    mlm_probability: float = 0.15  # share of an encoder's tokens that are masked
    seed: int = 0  # masks are drawn from (seed, the batch's tokens)

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not self.text_field:
            raise ValueError("text_field must be a field name")


class LanguageModeling:
    """Causal LM (decoders) or masked LM (encoders) over a text field; the model's own LM head, no new weights."""

    metric_names = ("perplexity",)

    def __init__(self, options: LanguageModelingOptions):
        self.options = options
        self.fields = RowFields(text=options.text_field)
        self.masked = options.model_type == "masked"
        # peft's task type follows this (CAUSAL_LM for decoders); `build_model` settles it for model_type auto
        self.model_kind = "masked-lm" if self.masked else "causal-lm"

    @property
    def required_fields(self) -> tuple[str, ...]:
        return (self.options.text_field,)

    # ---------------------------------------------------------------------------------------- data
    def input_row(self, text: str) -> dict[str, Any]:
        return {self.options.text_field: text}

    def input_text(self, row: Mapping[str, Any]) -> str:
        return str(row.get(self.options.text_field, ""))

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        key = self.options.text_field
        if key not in row:
            return f"missing field '{key}' (fields present: {', '.join(k for k in row if k != ROW_LANGUAGE) or 'none'})"
        if not isinstance(row[key], str) or not row[key].strip():
            return f"field '{key}' is empty"
        return None

    def fit_labels(self, rows: Any) -> None:
        return None

    def label_info(self) -> dict[str, Any]:
        return {}

    def load_label_info(self, info: Mapping[str, Any]) -> None:
        return None

    def encode(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        if self.masked and tokenizer.mask_token_id is None:
            raise ValueError("language-modeling on an encoder (masked LM) needs a tokenizer with a mask token")
        texts = [str(row[self.options.text_field]) for row in rows]
        encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        eos = tokenizer.eos_token_id
        features = []
        for ids in encoded:
            ids = list(ids)
            if not self.masked and eos is not None and (not ids or ids[-1] != eos):
                ids = ids[: max_length - 1] + [eos]  # the model learns where a text ends
            features.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
        return features

    def collate(self, features: Sequence[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
        """Right-padded ids with labels: every real token (decoders) or the masked ones (encoders)."""
        import torch

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, feature in enumerate(features):
            ids[i, : len(feature["input_ids"])] = torch.tensor(feature["input_ids"], dtype=torch.long)
            mask[i, : len(feature["input_ids"])] = 1
        if not self.masked:
            return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE)}
        masked_ids, labels = self.mask_tokens(ids, mask, tokenizer)
        return {"input_ids": masked_ids, "attention_mask": mask, "labels": labels}

    def mask_tokens(self, ids: Any, attention_mask: Any, tokenizer: Any) -> tuple[Any, Any]:
        """(inputs, labels) for masked LM; the same ids always give the same masks (see the module docstring)."""
        import torch

        generator = torch.Generator().manual_seed(zlib.crc32(ids.numpy().tobytes()) ^ (self.options.seed & 0xFFFFFFFF))
        special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        maskable = (attention_mask == 1) & ~torch.isin(ids, special)
        chosen = (torch.rand(ids.shape, generator=generator) < self.options.mlm_probability) & maskable
        for row in range(ids.shape[0]):  # every row with a maskable token learns something
            candidates = maskable[row].nonzero().flatten()
            if len(candidates) and not chosen[row].any():
                chosen[row, candidates[torch.randint(len(candidates), (1,), generator=generator)]] = True
        labels = ids.masked_fill(~chosen, IGNORE)
        draw = torch.rand(ids.shape, generator=generator)
        inputs = ids.clone()
        inputs[chosen & (draw < 0.8)] = tokenizer.mask_token_id
        randomised = chosen & (draw >= 0.8) & (draw < 0.9)
        inputs[randomised] = torch.randint(len(tokenizer), ids.shape, generator=generator)[randomised]
        return inputs, labels

    # --------------------------------------------------------------------------------------- model
    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        config = AutoConfig.from_pretrained(model_path)
        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(f"language-modeling: {model_path} is an encoder-decoder ({config.model_type}); this head "
                             "trains decoders (causal LM) and encoders (masked LM). Use task: seq2seq for T5-style models.")
        if self.options.model_type == "auto":  # encoders (BERT, XLM-R) have a masked-LM class; decoders do not
            self.masked = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        self.model_kind = "masked-lm" if self.masked else "causal-lm"
        model = load_with_lm_head(model_path, masked=self.masked, who="language-modeling",
                                  why="the objective needs the model's own LM head")
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model

    def head_modules(self, model: Any) -> list[str]:
        return []  # the pretrained LM head: no new weights

    # ---------------------------------------------------------------------------------- prediction
    def predict_batch(self, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, max_length: int,
                      **forward_kwargs: Any) -> list[dict[str, Any]]:
        """{"loss": mean token loss, "tokens": tokens scored, "perplexity": exp(loss)} per row."""
        import torch

        batch = self.collate(self.encode(rows, tokenizer, max_length), tokenizer)
        labels = batch.pop("labels")
        device = next(model.parameters()).device
        logits = model(**{k: v.to(device) for k, v in batch.items()}, **forward_kwargs).logits
        results = []
        for row in range(logits.shape[0]):  # one row at a time: a float copy of all logits can be large
            row_logits, row_labels = logits[row].float(), labels[row].to(device)
            if not self.masked:  # token t predicts token t + 1
                row_logits, row_labels = row_logits[:-1], row_labels[1:]
            losses = torch.nn.functional.cross_entropy(row_logits, row_labels, ignore_index=IGNORE, reduction="none")
            tokens = int((row_labels != IGNORE).sum())
            loss = float(losses.sum()) / tokens if tokens else 0.0
            results.append({"loss": loss, "tokens": tokens, "perplexity": math.exp(loss) if tokens else float("nan")})
        return results

    def metric_inputs(self, predictions: Sequence[dict[str, Any]],
                      rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Any]]:
        """((mean loss, tokens) per row, nothing to compare with): perplexity needs no reference."""
        return [(p["loss"], p["tokens"]) for p in predictions], [None] * len(rows)


def perplexity(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Corpus perplexity from (mean token loss, tokens) per row: exp(total loss / total tokens)."""
    tokens = sum(n for _, n in predictions)
    if not tokens:
        return float("nan")
    return math.exp(sum(loss * n for loss, n in predictions) / tokens)


@hookimpl
def xft_metrics():
    yield MetricSpec(name="perplexity", compute=perplexity, greater_is_better=False,
                     description="exp(mean token loss) over a corpus, from the language-modeling head; lower is better.")
