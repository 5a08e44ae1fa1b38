"""Built-in task head `sequence-classification`: single texts or text pairs, encoders and decoders.

Encoders (BERT, XLM-R) classify from their pooled first token; decoders (Gemma 3, Llama, Qwen2) from the
last non-padding token (transformers' own *ForSequenceClassification classes), or from the mean of all
tokens with `pooling: mean`. The label set is read from the training data and stored with the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from xft_core.hooks import RecipeSpec, RecipeTask, RowFields, TaskHeadSpec, hookimpl


@dataclass(frozen=True, kw_only=True)
class ClassificationOptions:
    text_field: str = "text"
    pair_field: str = "text_pair"  # used when rows have it (NLI, paraphrase)
    label_field: str = "label"
    labels: list[str] = ()  # fixed label order; empty = sorted labels seen in the training data
    pooling: Literal["auto", "mean"] = "auto"  # auto: first token for encoders, last non-pad token for decoders

    def __post_init__(self):
        object.__setattr__(self, "labels", list(self.labels))


class SequenceClassification:
    metric_names = ("macro_f1", "accuracy")
    model_kind = "sequence-classification"

    def __init__(self, options: ClassificationOptions):
        self.options = options
        self.fields = RowFields(text=options.text_field, pair=options.pair_field, label=options.label_field)
        self.labels: list[str] = list(options.labels)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return (self.options.text_field, self.options.label_field)

    # ---------------------------------------------------------------------------------------- data
    def input_row(self, text: str) -> dict[str, Any]:
        return {self.options.text_field: text}

    def input_text(self, row: Mapping[str, Any]) -> str:
        return str(row.get(self.options.text_field, ""))

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        o = self.options
        for key in (o.text_field, o.label_field):
            if key not in row:
                return f"missing field '{key}' (fields present: {', '.join(row) or 'none'})"
        for key in (o.text_field, o.pair_field):
            if key in row and (problem := _text_problem(key, row[key])):
                return problem
        value = row[o.label_field]
        if value is None:
            return f"field '{o.label_field}' is null; every training and evaluation row needs a label"
        if not isinstance(value, (str, int, float)):  # bool is an int
            return f"field '{o.label_field}' must be a string or a number, got {type(value).__name__} {value!r}"[:200]
        label = str(value).strip()
        if not label:
            return f"field '{o.label_field}' is empty"
        if "\n" in label or "\r" in label:
            return (f"field '{o.label_field}' holds a line break ({label[:40]!r}); in a CSV or TSV file an unbalanced "
                    "quote swallows the rows that follow it into one cell")
        if self.labels and label not in self.labels:
            return f'field "{o.label_field}" is "{label}", not one of: {", ".join(self.labels)}'
        return None

    def fit_labels(self, rows) -> None:
        if not self.labels:
            field = self.options.label_field
            self.labels = sorted({str(r[field]).strip() for r in rows if r.get(field) is not None})

    def label_info(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}

    def load_label_info(self, info: Mapping[str, Any]) -> None:
        self.labels = list(info["labels"])

    def encode(self, rows, tokenizer, max_length: int) -> list[dict]:
        o = self.options
        texts = [r[o.text_field] for r in rows]
        pairs = [r.get(o.pair_field) for r in rows]
        kwargs = dict(truncation=True, max_length=max_length)
        if any(p is not None for p in pairs):
            encoded = tokenizer(texts, [p or "" for p in pairs], **kwargs)
        else:
            encoded = tokenizer(texts, **kwargs)
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for i, row in enumerate(rows):
            feature = {k: encoded[k][i] for k in encoded.keys()}
            label = str(row.get(o.label_field, "")).strip()
            if label in index:
                feature["labels"] = index[label]
            features.append(feature)
        return features

    def collate(self, features, tokenizer) -> dict[str, Any]:
        import torch

        labels = [f["labels"] for f in features if "labels" in f]
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        batch = tokenizer.pad(inputs, return_tensors="pt")
        batch = dict(batch)
        if len(labels) == len(features):
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

    # --------------------------------------------------------------------------------------- model
    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        id2label = dict(enumerate(self.labels))
        config = AutoConfig.from_pretrained(model_path)
        if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id
        config.num_labels = len(self.labels)
        config.id2label = id2label
        config.label2id = {v: k for k, v in id2label.items()}
        if self.options.pooling == "mean":
            from xft_classification.pooling import MeanPoolClassifier

            return MeanPoolClassifier.from_backbone(model_path, config)
        return AutoModelForSequenceClassification.from_pretrained(model_path, config=config)

    def head_modules(self, model: Any) -> list[str]:
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        found = [n for n in ("classifier", "score") if n in names]
        return found

    # ---------------------------------------------------------------------------------- prediction
    def predict_batch(self, model, tokenizer, rows, *, max_length: int, **forward_kwargs) -> list[dict]:
        import torch

        batch = self.collate(self.encode(rows, tokenizer, max_length), tokenizer)
        batch.pop("labels", None)
        device = next(model.parameters()).device
        logits = model(**{k: v.to(device) for k, v in batch.items()}, **forward_kwargs).logits.float().cpu()
        probabilities = torch.softmax(logits, dim=-1)
        results = []
        for row_logits, row_probs in zip(logits, probabilities):
            best = int(row_probs.argmax())
            results.append({
                "label": self.labels[best],
                "scores": {label: float(p) for label, p in zip(self.labels, row_probs)},
                "logits": [float(x) for x in row_logits],
            })
        return results

    def metric_inputs(self, predictions, rows) -> tuple[list, list]:
        field = self.options.label_field
        return [p["label"] for p in predictions], [str(r[field]).strip() for r in rows]


def _text_problem(key: str, value: Any) -> str | None:
    if value is None:
        return f"field '{key}' is null"
    if not isinstance(value, str):
        return f"field '{key}' must be a string, got {type(value).__name__} {value!r}"[:200]
    if not value.strip():
        return f"field '{key}' is empty"
    return None


@hookimpl
def xft_task_heads():
    yield TaskHeadSpec(
        name="sequence-classification",
        options=ClassificationOptions,
        build=SequenceClassification,
        description="Text or text-pair classification (topic, sentiment, NLI) for encoders and decoders.",
    )


# ---------------------------------------------------------------------------------- transfer-suite recipes
SUITE_LORA = {"r": 16, "alpha": 32, "dropout": 0.05}  # the suite's LoRA settings (docs/transfer.md)


def _lora_head(top_layers: int = 0) -> Any:
    def config(task: RecipeTask) -> dict[str, Any]:
        head = "sequence-classification" if task.kind == "classification" else "token-classification"
        options = {**SUITE_LORA, **({"top_layers": top_layers} if top_layers else {})}
        return {"task": head, "strategy": "lora", "strategy_options": options}

    return config


@hookimpl
def xft_transfer_recipes():
    yield RecipeSpec(name="lora-head", config=_lora_head(), kinds=("classification", "tagging"), baseline=True,
                     default=True, description="LoRA (all layers) + a new classification head: plain fine-tuning, the baseline")
    yield RecipeSpec(name="lora-head-top6", config=_lora_head(6), kinds=("classification", "tagging"), default=True,
                     description="the baseline with only the top 6 layers adapted (the speed shortcut)")
