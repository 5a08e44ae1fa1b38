"""Built-in task head `token-classification`: one tag per word (POS, NER, chunking), encoders and decoders.

Rows are pre-split words with one tag each: ``{"tokens": ["Ich", "lese"], "tags": ["PRON", "VERB"]}``.
Words are tokenized with ``is_split_into_words=True`` and aligned through the fast tokenizer's
``word_ids()``: one sub-word per word carries the word's tag (the first by default), the others are -100
(ignored by the loss) unless ``label_all_subwords``. Predictions read the same sub-word back, so every
word gets exactly one tag; words cut off by ``max_length`` get the fallback tag: "O" in BIO tag sets,
else the most frequent training tag.

Byte-level BPE and SentencePiece tokenizers (Gemma, Llama, Qwen2, GPT-2) lose the space in front of a word
when given pre-split words, so "die" becomes a different token from the " die" of running text. The head
checks that once per tokenizer and, where a leading space restores running-text tokenization, gives it
every word after the first (what ``add_prefix_space`` does, without reloading the tokenizer).

Gemma 3 text has no token-classification class in transformers 5.24; `build_model` registers the generic one
(`xft_tagging.families.register_gemma3_token_classification`) before loading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from xft_core.hooks import RecipeSpec, RecipeTask, RowFields, TaskHeadSpec, hookimpl

IGNORE = -100  # label id the loss skips
BIO_PREFIXES = ("B-", "I-")
_PROBE = ("Words", "split", "apart", "again", ".")


@dataclass(frozen=True, kw_only=True)
class TaggingOptions:
    tokens_field: str = "tokens"
    tags_field: str = "tags"
    labels: list[str] = ()  # fixed tag set and order; empty = sorted tags seen in the training data
    label_all_subwords: bool = False  # every sub-word trains on its word's tag (B-X becomes I-X after the first)
    label_subword: Literal["first", "last"] = "first"  # which sub-word carries and predicts the tag; "last"
    # suits causal decoders, whose first piece of a word cannot see the rest of it
    scheme: Literal["auto", "bio", "plain"] = "auto"  # auto: BIO when every tag is O, B-* or I-*

    def __post_init__(self):
        object.__setattr__(self, "labels", list(self.labels))
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: repeated tags in {self.labels}")
        if self.scheme == "bio" and self.labels and not is_bio(self.labels):
            raise ValueError(f"scheme 'bio' needs tags O, B-* or I-*; not: "
                             f"{', '.join(t for t in self.labels if not is_bio([t]))}")


def is_bio(tags: Iterable[str]) -> bool:
    """True when every tag is "O" or starts with "B-" / "I-" (BIO / IOB2), so entity F1 applies."""
    return all(t == "O" or (t.startswith(BIO_PREFIXES) and len(t) > 2) for t in tags)


def read_positions(word_ids: Sequence[int | None], position: str = "first") -> dict[int, int]:
    """{word index: index of the sub-word that carries its tag} for the words the encoding kept."""
    chosen: dict[int, int] = {}
    for index, word in enumerate(word_ids):
        if word is not None and (position == "last" or word not in chosen):
            chosen[word] = index
    return chosen


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], *, all_subwords: bool = False,
                 position: str = "first", continuation: Mapping[int, int] | None = None) -> list[int]:
    """Sub-word labels for one encoded row: the reading sub-word of each word gets the word's label; the
    others get -100, or with `all_subwords` the word's label mapped through `continuation` (B-X -> I-X)."""
    chosen = read_positions(word_ids, position)
    continuation = continuation or {}
    labels = []
    for index, word in enumerate(word_ids):
        if word is None:
            labels.append(IGNORE)
        elif chosen[word] == index:
            labels.append(word_labels[word])
        elif all_subwords:
            labels.append(continuation.get(word_labels[word], word_labels[word]))
        else:
            labels.append(IGNORE)
    return labels


def needs_leading_space(tokenizer: Any) -> bool:
    """Whether pre-split words must carry a leading space (after the first) to tokenize as running text."""
    natural = tokenizer(" ".join(_PROBE), add_special_tokens=False)["input_ids"]
    split = tokenizer(list(_PROBE), is_split_into_words=True, add_special_tokens=False)["input_ids"]
    if split == natural:
        return False
    spaced = [_PROBE[0]] + [" " + w for w in _PROBE[1:]]
    return tokenizer(spaced, is_split_into_words=True, add_special_tokens=False)["input_ids"] == natural


class TokenClassification:
    model_kind = "token-classification"
    adopted_label_info = ("fallback_tag",)  # the most frequent training tag: a run from a package keeps the package's

    def __init__(self, options: TaggingOptions):
        self.options = options
        self.fields = RowFields(text=options.tokens_field, tags=options.tags_field)
        self.labels: list[str] = list(options.labels)
        self.fallback_tag: str = ""
        self._spacing: tuple[Any, bool] | None = None  # (tokenizer, needs a leading space) of the last tokenizer

    @property
    def required_fields(self) -> tuple[str, ...]:
        return (self.options.tokens_field, self.options.tags_field)

    # ------------------------------------------------------------------------------------- tag set
    @property
    def scheme(self) -> str:
        if self.options.scheme != "auto":
            return self.options.scheme
        return "bio" if self.labels and is_bio(self.labels) else "plain"

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("entity_f1", "token_accuracy") if self.scheme == "bio" else ("token_accuracy",)

    def _fallback(self) -> str:
        if self.fallback_tag in self.labels:
            return self.fallback_tag
        return "O" if "O" in self.labels else (self.labels[0] if self.labels else "O")

    # ---------------------------------------------------------------------------------------- data
    def input_row(self, text: str) -> dict[str, Any]:
        """Raw text at inference: whitespace-separated words, one tag predicted per word."""
        return {self.options.tokens_field: text.split()}

    def input_text(self, row: Mapping[str, Any]) -> str:
        return " ".join(map(str, row.get(self.options.tokens_field, [])))

    def validate_row(self, row: Mapping[str, Any]) -> str | None:
        o = self.options
        for key in (o.tokens_field, o.tags_field):
            if key not in row:
                return f"missing field '{key}' (fields present: {', '.join(k for k in row if not k.startswith('__')) or 'none'})"
        tokens, tags = row[o.tokens_field], row[o.tags_field]
        for key, value in ((o.tokens_field, tokens), (o.tags_field, tags)):
            if not isinstance(value, list):
                return f"field '{key}' must be a list of strings (one per word), got {type(value).__name__}"
            if not value:
                return f"field '{key}' is an empty list"
            unknown_ok = key == o.tags_field  # null: the word's tag is unknown and not trained on (self-training)
            bad = next((i for i, v in enumerate(value)
                        if not (v is None and unknown_ok) and (not isinstance(v, str) or not v.strip())), None)
            if bad is not None:
                return f"field '{key}' item {bad} is {value[bad]!r}, not a non-empty string"
        if all(t is None for t in tags):
            return f"field '{o.tags_field}' holds no tag, only nulls (a row needs at least one known tag)"
        if len(tokens) != len(tags):
            return (f"field '{o.tokens_field}' has {len(tokens)} words but '{o.tags_field}' has {len(tags)} tags "
                    "(need one tag per word)")
        tags = [t for t in tags if t is not None]
        if self.options.scheme == "bio" and not is_bio(tags):
            wrong = next(t for t in tags if not is_bio([t]))
            return f"field '{o.tags_field}' has tag '{wrong}', not O, B-* or I-* (task_options.scheme: bio)"
        if self.labels:
            unknown = [t for t in tags if t.strip() not in self.labels]
            if unknown:
                return f'field "{o.tags_field}" has tag "{unknown[0]}", not one of: {", ".join(self.labels)}'
        return None

    def fit_labels(self, rows: Iterable[Mapping[str, Any]]) -> None:
        counts = Counter(t.strip() for row in rows for t in row[self.options.tags_field] if t is not None)
        if not self.labels:
            self.labels = sorted(counts)
        if counts:
            self.fallback_tag = "O" if "O" in self.labels else max(self.labels, key=lambda t: (counts[t], t))

    def label_info(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "fallback_tag": self._fallback(), "scheme": self.scheme}

    def load_label_info(self, info: Mapping[str, Any]) -> None:
        self.labels = list(info["labels"])
        self.fallback_tag = str(info.get("fallback_tag") or "")

    # -------------------------------------------------------------------------------- tokenization
    def _words(self, words: Sequence[str], tokenizer: Any) -> list[str]:
        if self._spacing is None or self._spacing[0] is not tokenizer:
            self._spacing = (tokenizer, needs_leading_space(tokenizer))
        words = [str(w) for w in words]
        return [words[0]] + [" " + w for w in words[1:]] if self._spacing[1] and words else words

    def tokenize(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[dict], list[list]]:
        """(model inputs per row, word index of every sub-word per row)."""
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                f"token-classification needs a fast (Rust `tokenizers`) tokenizer for word alignment (word_ids); "
                f"{type(tokenizer).__name__} is not one. Save the model with a tokenizer.json, or convert it with "
                "AutoTokenizer.from_pretrained(folder, use_fast=True).save_pretrained(folder)."
            )
        field = self.options.tokens_field
        batch = [self._words(row[field], tokenizer) for row in rows]
        encoded = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length)
        features = [{k: encoded[k][i] for k in encoded.keys()} for i in range(len(rows))]
        return features, [encoded.word_ids(i) for i in range(len(rows))]

    def encode(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> list[dict]:
        features, word_ids = self.tokenize(rows, tokenizer, max_length)
        index = {tag: i for i, tag in enumerate(self.labels)}
        continuation = {index[t]: index["I-" + t[2:]] for t in self.labels
                        if self.scheme == "bio" and t.startswith("B-") and "I-" + t[2:] in index}
        for feature, ids, row in zip(features, word_ids, rows):
            tags = row.get(self.options.tags_field)
            if isinstance(tags, list) and all(t is None or str(t).strip() in index for t in tags):
                known = [IGNORE if t is None else index[str(t).strip()] for t in tags]  # null: not trained on
                feature["labels"] = align_labels(
                    ids, known, all_subwords=self.options.label_all_subwords,
                    position=self.options.label_subword, continuation=continuation)
        return features

    def collate(self, features: Sequence[dict], tokenizer: Any) -> dict[str, Any]:
        import torch

        labels = [f["labels"] for f in features if "labels" in f]
        batch = dict(tokenizer.pad([{k: v for k, v in f.items() if k != "labels"} for f in features], return_tensors="pt"))
        if labels and len(labels) == len(features):
            width = batch["input_ids"].shape[1]
            left = getattr(tokenizer, "padding_side", "right") == "left"
            padded = [[IGNORE] * (width - len(row)) + row if left else row + [IGNORE] * (width - len(row)) for row in labels]
            batch["labels"] = torch.tensor(padded, dtype=torch.long)
        return batch

    # --------------------------------------------------------------------------------------- model
    def build_model(self, model_path: Path, tokenizer: Any) -> Any:
        from transformers import AutoConfig, AutoModelForTokenClassification

        from xft_tagging.families import register_gemma3_token_classification

        register_gemma3_token_classification()
        config = AutoConfig.from_pretrained(model_path)
        if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id
        id2label = dict(enumerate(self.labels))
        config.num_labels = len(self.labels)
        config.id2label = id2label
        config.label2id = {v: k for k, v in id2label.items()}
        try:
            return AutoModelForTokenClassification.from_pretrained(model_path, config=config)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            raise ValueError(
                f"token-classification: transformers has no token-classification model for '{config.model_type}' "
                f"({model_path}). Register one with AutoModelForTokenClassification.register(...) in a plugin, "
                "or choose a model family that has one (BERT, XLM-R, Llama, Qwen2, Gemma 3, ...)."
            ) from None

    def head_modules(self, model: Any) -> list[str]:
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        return [n for n in ("classifier", "score") if n in names]

    # ---------------------------------------------------------------------------------- prediction
    def predict_batch(self, model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, max_length: int,
                      **forward_kwargs: Any) -> list[dict]:
        """{"tokens": words, "tags": one tag per word, "confidence": the probability of each word's tag (0 for words
        cut off by max_length, which get the fallback tag)} per row, read from each word's tagging sub-word."""
        import torch

        device = next(model.parameters()).device
        left = getattr(tokenizer, "padding_side", "right") == "left"
        fallback = self._fallback()
        features, word_ids = self.tokenize(rows, tokenizer, max_length)
        batch = {k: v.to(device) for k, v in self.collate(features, tokenizer).items() if k != "labels"}
        probabilities = torch.softmax(model(**batch, **forward_kwargs).logits.float(), dim=-1)
        top, best = (t.cpu().tolist() for t in probabilities.max(dim=-1))
        width = batch["input_ids"].shape[1]
        results: list[dict] = []
        for row, ids, row_best, row_top in zip(rows, word_ids, best, top):
            offset = width - len(ids) if left else 0
            chosen = read_positions(ids, self.options.label_subword)
            words = list(row[self.options.tokens_field])
            tags = [self.labels[row_best[offset + chosen[w]]] if w in chosen else fallback for w in range(len(words))]
            confidence = [round(row_top[offset + chosen[w]], 6) if w in chosen else 0.0 for w in range(len(words))]
            results.append({"tokens": words, "tags": tags, "confidence": confidence})
        return results

    def metric_inputs(self, predictions: Sequence[dict], rows: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
        field = self.options.tags_field
        return [list(p["tags"]) for p in predictions], [[str(t).strip() for t in r[field]] for r in rows]


@hookimpl
def xft_task_heads():
    yield TaskHeadSpec(
        name="token-classification",
        options=TaggingOptions,
        build=TokenClassification,
        description="One tag per word (POS, NER with BIO tags) for encoders and decoders; entity F1 / token accuracy.",
    )


def _self_trained_head(task: RecipeTask) -> dict[str, Any]:
    """LoRA + the tagging head, then one round of self-training on the targets' unlabelled sentences: words whose
    predicted tag has probability 0.8 or more keep it, the others are not trained on."""
    return {"task": "token-classification", "strategy": "lora", "strategy_options": {"r": 16, "alpha": 32, "dropout": 0.05},
            "data": {"unlabelled_split": task.unlabelled_split},
            "self_training": {"rounds": 1, "threshold": 0.8, "steps": task.steps, "calibration": "none",
                              "languages": list(task.targets)}}


@hookimpl
def xft_transfer_recipes():
    yield RecipeSpec(name="lora-head-st", config=_self_trained_head, kinds=("tagging",), needs=("unlabelled",),
                     description="lora-head on the tags, then one round of self-training: each target's unlabelled "
                                 "sentences tagged by the adapter, words tagged with probability >= 0.8 train with the "
                                 "English rows (as many steps again)")
