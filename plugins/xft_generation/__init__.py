"""Built-in task heads `causal-lm` (Gemma 3, Llama, Qwen2) and `seq2seq` (T5, mT5): translation and instructions.

Rows hold a source text and a target text (`source`/`target` for translation, `prompt`/`completion` with
`source_field`/`target_field` for instructions). A template turns the source into the prompt; language
names come from the row's language (the engine passes it under `ROW_LANGUAGE`) and `target_language`.

Decoders learn only the target: prompt tokens are labelled -100, the target ends with EOS, so generation
stops by itself. Batches are padded on the right for training and on the left for generation (built by
hand, so a shared tokenizer is never switched from one side to the other under a concurrent caller).
Prediction returns `{"text": ...}` per row; the metrics are chrF and BLEU (sacrebleu, `xft_metrics`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from xft_core.hooks import ROW_LANGUAGE, RowFields, TaskHeadSpec, hookimpl
from xft_generation.language_modeling import LanguageModeling, LanguageModelingOptions, xft_metrics  # noqa: F401 (perplexity)
from xft_generation.languages import LANGUAGE_NAMES, language_name

__all__ = ["CausalLM", "GenerationOptions", "LANGUAGE_NAMES", "Seq2Seq", "language_name"]

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)

# Named templates; `translate` is worded for each head's family (T5 was pre-trained on the second form).
TEMPLATES = {
    "causal-lm": {
        "translate": "Translate from {source_language} to {target_language}.\n{source_language}: {source}\n{target_language}:",
        "plain": "{source}",
    },
    "seq2seq": {
        "translate": "translate {source_language} to {target_language}: {source}",
        "plain": "{source}",
    },
}


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    source_field: str = "source"  # `prompt` for instruction data
    target_field: str = "target"  # `completion` for instruction data
    template: str = "translate"  # a named template (translate, plain) or a format string: {source},
    # {source_language}, {target_language} (names, from codes) and any field of the row
    target_prefix: str = " "  # causal-lm: text between the prompt and the target ("English:" + " Hello")
    source_language: str = ""  # used when a row does not say its language (the engine always does)
    target_language: str = "en"
    language_names: dict[str, str] = field(default_factory=dict)  # code -> name, asked before the built-in table
    max_new_tokens: int = 64
    num_beams: int = 1
    stop_strings: tuple[str, ...] = ()  # generated text is cut at the first of these (for example "\n")

    def __post_init__(self):
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        if self.num_beams <= 0:
            raise ValueError(f"num_beams must be a positive integer, got {self.num_beams}")
        if not self.source_field or not self.target_field:
            raise ValueError("source_field and target_field must be field names")
        if "{" not in self.template and self.template not in TEMPLATES["causal-lm"]:
            raise ValueError(
                f"template {self.template!r} is neither a named template ({', '.join(TEMPLATES['causal-lm'])}) "
                "nor a format string with {source}"
            )
        try:
            list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise ValueError(f"template {self.template!r} is not a valid format string: {exc}") from None


class _TextToText:
    """What both heads share: rows, prompts, language names, metrics."""

    model_kind = "causal-lm"
    metric_names = ("chrf", "bleu")

    def __init__(self, options: GenerationOptions):
        self.options = options
        self.fields = RowFields(text=options.source_field, target=options.target_field)
        self.template = TEMPLATES[self.model_kind].get(options.template, options.template)
        self.template_fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        self._derived = {"source", "source_language", "target_language"}

    @property
    def required_fields(self) -> tuple[str, ...]:
        return (self.options.source_field, self.options.target_field)

    # ---------------------------------------------------------------------------------------- data
    def input_row(self, text: str) -> dict[str, Any]:
        return {self.options.source_field: text}

    def input_text(self, row: Mapping[str, Any]) -> str:
        return str(row.get(self.options.source_field, ""))

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        for key in self.required_fields:
            if key not in row:
                return f"missing field '{key}' (fields present: {', '.join(k for k in row if k != ROW_LANGUAGE) or 'none'})"
            value = row[key]
            if not isinstance(value, str) or not value.strip():
                return f"field '{key}' is empty"
        missing = [f for f in self.template_fields - self._derived if f not in row]
        if missing:
            return f"template field '{{{missing[0]}}}' is not a field of this row (task_options.template)"
        return None

    def fit_labels(self, rows) -> None:
        return None

    def label_info(self) -> dict[str, Any]:
        return {}

    def load_label_info(self, info: Mapping[str, Any]) -> None:
        return None

    def head_modules(self, model: Any) -> list[str]:
        return []  # the LM head is the (tied) embedding matrix: no separate head weights

    def prompt(self, row: Mapping[str, Any]) -> str:
        """The row's source text put into the template, with language names filled in."""
        o = self.options
        values = {k: v for k, v in row.items() if isinstance(k, str)}
        values["source"] = row[o.source_field]
        if "source_language" in self.template_fields:
            code = row.get(ROW_LANGUAGE) or o.source_language
            if not code:
                raise ValueError(
                    f"the template needs the source language, but the row does not say it (key '{ROW_LANGUAGE}') "
                    "and task_options.source_language is not set"
                )
            values["source_language"] = language_name(str(code), o.language_names)
        values["target_language"] = language_name(o.target_language, o.language_names)
        return self.template.format_map(values)

    def finish(self, text: str) -> str:
        """The generated text, cut at the first stop string after any leading whitespace."""
        text = text.lstrip()
        for stop in self.options.stop_strings:
            if stop and stop in text:
                text = text.split(stop, 1)[0]
        return text.strip()

    def metric_inputs(self, predictions, rows) -> tuple[list, list]:
        target = self.options.target_field
        return [p["text"] for p in predictions], [str(r[target]).strip() for r in rows]

    # ---------------------------------------------------------------------------------- prediction
    def generation_config(self, model: Any, tokenizer: Any) -> Any:
        """Greedy (or beam) decoding, whatever sampling defaults the checkpoint ships with."""
        from transformers import GenerationConfig

        config = GenerationConfig.from_model_config(model.config)
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        shipped = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos += shipped if isinstance(shipped, list) else [shipped]
        eos = [tokenizer.eos_token_id] + [e for e in eos if e is not None and e != tokenizer.eos_token_id]
        config.update(
            max_new_tokens=self.options.max_new_tokens, num_beams=self.options.num_beams, do_sample=False,
            eos_token_id=eos if len(eos) > 1 else eos[0], pad_token_id=tokenizer.pad_token_id,
        )
        return config

    def predict_batch(self, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, max_length: int,
                      **forward_kwargs: Any) -> list[dict]:
        """{"text": generated text} per row, greedy (or beam) decoding."""
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in self.generation_inputs(rows, tokenizer, max_length).items()}
        if self.options.stop_strings:
            forward_kwargs["stopping_criteria"] = _stop_after_text(tokenizer, self.options.stop_strings,
                                                                   self.generated_from(batch))
        output = model.generate(**batch, generation_config=self.generation_config(model, tokenizer), **forward_kwargs)
        texts = tokenizer.batch_decode(output[:, self.generated_from(batch) :], skip_special_tokens=True)
        return [{"text": self.finish(text)} for text in texts]


def _stop_after_text(tokenizer: Any, stops: Sequence[str], start_at: int) -> Any:
    """Stopping criteria that end a row once its generated text (leading whitespace aside) holds a stop string.

    transformers' own `stop_strings` would stop on a leading newline, which base models often emit first."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopAfterText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tokenizer.batch_decode(input_ids[:, start_at:], skip_special_tokens=True)
            done = [any(stop in text.lstrip() for stop in stops) for text in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopAfterText()])


def _pad(sequences: Sequence[Sequence[int]], value: int, left: bool = False) -> Any:
    import torch

    width = max((len(s) for s in sequences), default=0)
    rows = [([value] * (width - len(s)) + list(s)) if left else (list(s) + [value] * (width - len(s))) for s in sequences]
    return torch.tensor(rows, dtype=torch.long)


def _fit_prompt(ids: list[int], room: int, bos: int | None) -> list[int]:
    """Cut a prompt to `room` tokens from the left (its end names the target language), keeping BOS."""
    if len(ids) <= room:
        return ids
    if bos is not None and ids and ids[0] == bos and room > 1:
        return [bos] + ids[len(ids) - room + 1 :]
    return ids[len(ids) - room :]


# ------------------------------------------------------------------------------------------- causal-lm
class CausalLM(_TextToText):
    """Decoder-only generation: the prompt is context, only the target (plus EOS) is learned."""

    model_kind = "causal-lm"

    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_path)
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model

    def prompt_ids(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any) -> list[list[int]]:
        return tokenizer([self.prompt(r) for r in rows], add_special_tokens=True)["input_ids"]

    def encode(self, rows, tokenizer, max_length: int) -> list[dict]:
        if tokenizer.eos_token_id is None:
            raise ValueError("causal-lm: the tokenizer has no EOS token, so a target could never end")
        prompts = self.prompt_ids(rows, tokenizer)
        target_texts = [self.options.target_prefix + str(r[self.options.target_field]) for r in rows]
        targets = tokenizer(target_texts, add_special_tokens=False)["input_ids"]
        features = []
        for prompt, target in zip(prompts, targets):
            target = list(target) + [tokenizer.eos_token_id]
            target = target[: max(max_length - len(prompt), max_length // 2)]  # long targets keep at least half
            prompt = _fit_prompt(list(prompt), max_length - len(target), tokenizer.bos_token_id)
            ids = prompt + target
            features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(prompt) + target})
        return features

    def collate(self, features, tokenizer) -> dict[str, Any]:
        """Right padding: positions of real tokens start at 0, as in generation after left padding."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        batch = {
            "input_ids": _pad([f["input_ids"] for f in features], pad),
            "attention_mask": _pad([f["attention_mask"] for f in features], 0),
        }
        if all("labels" in f for f in features):
            batch["labels"] = _pad([f["labels"] for f in features], IGNORE)
        return batch

    def generation_inputs(self, rows, tokenizer, max_length: int) -> dict[str, Any]:
        """Left-padded prompts, so every row's next token is generated at the same position."""
        room = max(max_length - self.options.max_new_tokens, 1)
        prompts = [_fit_prompt(list(p), room, tokenizer.bos_token_id) for p in self.prompt_ids(rows, tokenizer)]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return {"input_ids": _pad(prompts, pad, left=True), "attention_mask": _pad([[1] * len(p) for p in prompts], 0, left=True)}

    def generated_from(self, batch: Mapping[str, Any]) -> int:
        """Where generated tokens start in `generate`'s output: after the (left-padded) prompt."""
        return batch["input_ids"].shape[1]


# --------------------------------------------------------------------------------------------- seq2seq
class Seq2Seq(_TextToText):
    """Encoder-decoder generation: the prompt goes to the encoder, the target (ending in EOS) is the label."""

    model_kind = "seq2seq"

    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM.from_pretrained(model_path)

    def _ids(self, texts: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
        eos = tokenizer.eos_token_id
        out = []
        for ids in tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]:
            ids = list(ids)
            if eos is not None and (not ids or ids[-1] != eos):  # tokenizers without a post-processor
                ids = ids[: max_length - 1] + [eos]
            out.append(ids)
        return out

    def encode(self, rows, tokenizer, max_length: int) -> list[dict]:
        inputs = self._ids([self.prompt(r) for r in rows], tokenizer, max_length)
        labels = self._ids([str(r[self.options.target_field]) for r in rows], tokenizer, max_length)
        return [{"input_ids": i, "attention_mask": [1] * len(i), "labels": y} for i, y in zip(inputs, labels)]

    def collate(self, features, tokenizer) -> dict[str, Any]:
        batch = {
            "input_ids": _pad([f["input_ids"] for f in features], tokenizer.pad_token_id),
            "attention_mask": _pad([f["attention_mask"] for f in features], 0),
        }
        if all("labels" in f for f in features):
            batch["labels"] = _pad([f["labels"] for f in features], IGNORE)  # the model shifts them right itself
        return batch

    def generation_inputs(self, rows, tokenizer, max_length: int) -> dict[str, Any]:
        inputs = self._ids([self.prompt(r) for r in rows], tokenizer, max_length)
        return {"input_ids": _pad(inputs, tokenizer.pad_token_id), "attention_mask": _pad([[1] * len(i) for i in inputs], 0)}

    def generated_from(self, batch: Mapping[str, Any]) -> int:
        return 0  # the decoder's output holds only its start token (special, skipped) and generated tokens


@hookimpl
def xft_task_heads():
    yield TaskHeadSpec(
        name="causal-lm",
        options=GenerationOptions,
        build=CausalLM,
        description="Generation with decoder models (Gemma 3, Llama, Qwen2): translation or instructions; chrF, BLEU.",
    )
    yield TaskHeadSpec(
        name="seq2seq",
        options=GenerationOptions,
        build=Seq2Seq,
        description="Generation with encoder-decoder models (T5, mT5): translation or instructions; chrF, BLEU.",
    )
    yield TaskHeadSpec(
        name="language-modeling",
        options=LanguageModelingOptions,
        build=LanguageModeling,
        description="The model's own objective on unlabelled text (causal LM for decoders, masked LM for encoders); "
                    "trains MAD-X language adapters; perplexity.",
    )
