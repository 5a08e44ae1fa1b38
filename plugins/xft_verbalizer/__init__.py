"""Built-in task head `prompt-classification`: classification by label words, scored by the model's own LM head.

Prompt-based fine-tuning (Zhao & Schütze 2021; ProFiT, Ma et al. 2023): each row is put into a prompt template
("{text}\\nTopic:") and the label words (" science", " travel", ...) compete as the model's next token (decoders)
or as the word under a mask token (encoders). Training moves the body (LoRA by default) so that the right label
word wins; the head is the pretrained LM head, shared by every language, so an adapter trained on English
answers in German or Swahili far better than a freshly initialised classification layer does. Label words
default to the label names and can be set per label and per language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from xft_classification import SequenceClassification
from xft_core.hooks import ROW_LANGUAGE, RecipeSpec, RecipeTask, RowFields, TaskHeadSpec, hookimpl
from xft_core.util.languages import normalize
from xft_verbalizer.model import VerbalizerModel

__all__ = ["TEMPLATES", "PromptClassification", "VerbalizerModel", "VerbalizerOptions"]

TEMPLATES = {  # name -> (template for single texts, template for pairs); {mask} is added for encoders
    "auto": ("{text}\nAnswer:", "{text}\nQuestion: {text_pair}\nAnswer:"),  # chosen per run (adapt), else "answer"
    "answer": ("{text}\nAnswer:", "{text}\nQuestion: {text_pair}\nAnswer:"),
    "topic": ("{text}\nTopic:", "{text}\n{text_pair}\nTopic:"),
    "sentiment": ("{text}\nSentiment:", "{text}\n{text_pair}\nSentiment:"),
    "nli": ("{text}\nAnswer:", "{text}\nQuestion: {text_pair} True, False or Neither?\nAnswer:"),
}
PRESET_WORDS = {  # label words a named template brings for the labels it is made for
    "nli": {"entailment": "True", "neutral": "Neither", "contradiction": "False"},
}
# `template: auto`: label names that say what the task is; otherwise the template is chosen on source rows
SENTIMENT_LABELS = {"positive", "negative", "neutral", "mixed", "pos", "neg", "neu", "very positive", "very negative"}
NLI_LABELS = {"entailment", "neutral", "contradiction"}
AUTO_CANDIDATES = {False: ("topic", "sentiment", "answer"), True: ("nli", "answer")}  # single texts, pairs


def template_for_labels(labels: Sequence[str]) -> str | None:
    """The named template the label names call for (sentiment, NLI), or None when they say nothing."""
    folded = {str(label).casefold().strip() for label in labels}
    if folded and folded <= SENTIMENT_LABELS and folded & {"positive", "pos"} and folded & {"negative", "neg"}:
        return "sentiment"
    if folded == NLI_LABELS:
        return "nli"
    return None


@dataclass(frozen=True, kw_only=True)
class VerbalizerOptions:
    text_field: str = "text"
    pair_field: str = "text_pair"  # used when rows have it (NLI, paraphrase)
    label_field: str = "label"
    labels: list[str] = field(default_factory=list)  # fixed label order; empty = sorted labels of the training data
    # auto (chosen per run: from the label names, else zero-shot on the source rows), topic, sentiment, nli, answer,
    # or a format string with {text}, {text_pair} (and {mask})
    template: str = "auto"
    label_words: dict[str, Any] = field(default_factory=dict)  # {label: word}, or {language: {label: word}}
    # ("*" for every other language); default: the label name itself
    loss: Literal["label_words", "vocabulary"] = "label_words"  # softmax over the label words, or over all tokens
    model_type: Literal["auto", "causal", "masked"] = "auto"  # auto: causal for decoders, masked for encoders

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", list(self.labels))
        if "{" not in self.template and self.template not in TEMPLATES:
            raise ValueError(f"template {self.template!r} is neither a named template ({', '.join(TEMPLATES)}) "
                             "nor a format string with {text}")
        if "{" in self.template and "{text}" not in self.template:
            raise ValueError(f"template {self.template!r} has no {{text}} field")
        nested = [isinstance(v, Mapping) for v in self.label_words.values()]
        if nested and any(nested) != all(nested):
            raise ValueError("label_words: either {label: word} or {language: {label: word}}, not a mix")


class PromptClassification(SequenceClassification):
    model_kind = "prompt-classification"

    def __init__(self, options: VerbalizerOptions):  # type: ignore[override]
        self.options = options  # type: ignore[assignment]
        self.fields = RowFields(text=options.text_field, pair=options.pair_field, label=options.label_field)
        self.labels: list[str] = list(options.labels)
        self.masked = options.model_type == "masked"
        self._words: dict[tuple[int, str], list[int]] = {}  # (tokenizer id, language) -> token id per label
        self.chosen: str | None = None  # `template: auto`: the named template this run settled on (adapt)

    # ----------------------------------------------------------------------------------- prompt parts
    @property
    def template_name(self) -> str:
        """The named template in use: the one given, or for `auto` the one chosen ("answer" until then)."""
        return (self.chosen or "answer") if self.options.template == "auto" else self.options.template

    def template_for(self, has_pair: bool) -> str:
        o = self.options
        if "{" in o.template:
            template = o.template
        else:
            template = TEMPLATES[self.template_name][1 if has_pair else 0]
        if self.masked and "{mask}" not in template:
            template += " {mask}"
        return template

    def words_for(self, language: str | None) -> dict[str, str]:
        """The label word of every label in `language`: set per language, else for every language, else the name."""
        o = self.options
        words = {label: label for label in self.labels}
        preset = PRESET_WORDS.get(self.template_name, {})
        if set(preset) == set(self.labels):
            words.update(preset)
        given = o.label_words
        if given and all(isinstance(v, Mapping) for v in given.values()):
            key = normalize(language) if language else ""
            chosen = next((v for k, v in given.items() if k != "*" and key and normalize(k) == key), given.get("*", {}))
            words.update({str(k): str(v) for k, v in chosen.items()})
        else:
            words.update({str(k): str(v) for k, v in given.items()})
        return words

    def label_token_ids(self, tokenizer: Any, language: str | None) -> list[int]:
        """The first token of each label's word (with a leading space, as it follows the prompt)."""
        key = (id(tokenizer), language or "")
        if key not in self._words:
            words = self.words_for(language)
            ids = []
            for label in self.labels:
                pieces = tokenizer(" " + words[label].strip(), add_special_tokens=False)["input_ids"]
                if not pieces:
                    raise ValueError(f"prompt-classification: label word {words[label]!r} of '{label}' tokenizes to nothing")
                ids.append(pieces[0])
            clash = [label for label, i in zip(self.labels, ids) if ids.count(i) > 1]
            if clash:
                shown = ", ".join(f"{label} -> {words[label]!r}" for label in clash)
                raise ValueError(f"prompt-classification: label words share their first token ({shown}"
                                 f"{f' in {language}' if language else ''}); set task_options.label_words to distinct words")
            self._words[key] = ids
        return self._words[key]

    # --------------------------------------------------------------------------------- template: auto
    def adapt(self, rows: Sequence[Mapping[str, Any]], predict: Any, score: Any) -> str | None:
        """`template: auto`: the template the label names call for (positive/negative/... -> sentiment,
        entailment/neutral/contradiction -> nli); else the candidate that scores best zero-shot on the source rows."""
        if self.options.template != "auto" or self.chosen:
            return None
        named = template_for_labels(self.labels)
        if named:
            self.chosen = named
            return f"prompt-classification: template auto -> {named} (the label names {', '.join(self.labels)})"
        pair = any(row.get(self.options.pair_field) for row in rows)
        results = {}
        for name in AUTO_CANDIDATES[pair]:
            self.chosen = name
            self._words.clear()
            results[name] = float(score(predict(rows), rows))
        self.chosen = max(results, key=lambda name: results[name])  # ties: the earlier candidate
        self._words.clear()
        shown = ", ".join(f"{name} {100 * value:.1f}" for name, value in results.items())
        return (f"prompt-classification: template auto -> {self.chosen} (zero-shot on {len(rows)} source rows before "
                f"training: {shown})")

    def label_info(self) -> dict[str, Any]:
        info = super().label_info()
        if self.options.template == "auto" and self.chosen:
            info["template"] = self.chosen
        return info

    def load_label_info(self, info: Mapping[str, Any]) -> None:
        super().load_label_info(info)
        chosen = info.get("template")
        if self.options.template == "auto" and chosen in TEMPLATES and chosen != "auto":
            self.chosen = str(chosen)
            self._words.clear()

    # ---------------------------------------------------------------------------------------- data
    def encode(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int) -> list[dict]:
        o = self.options
        if self.masked and tokenizer.mask_token is None:
            raise ValueError("prompt-classification on an encoder needs a tokenizer with a mask token")
        prompts = [self._prompt(row, tokenizer) for row in rows]
        encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for row, ids in zip(rows, encoded):
            ids = list(ids)
            if len(ids) > max_length:
                ids = self._shortened(row, tokenizer, max_length)
            feature: dict[str, Any] = {"input_ids": ids, "attention_mask": [1] * len(ids),
                                       "label_token_ids": self.label_token_ids(tokenizer, row.get(ROW_LANGUAGE))}
            if self.masked:
                feature["answer_positions"] = ids.index(tokenizer.mask_token_id)
            label = str(row.get(o.label_field, "")).strip()
            if label in index:
                feature["labels"] = index[label]
            features.append(feature)
        return features

    def _prompt(self, row: Mapping[str, Any], tokenizer: Any, values: Mapping[str, str] | None = None) -> str:
        o = self.options
        values = values or {"text": str(row[o.text_field]), "text_pair": str(row.get(o.pair_field) or "")}
        fields = {k: v for k, v in row.items() if isinstance(k, str) and k not in (o.text_field, o.pair_field)}
        template = self.template_for(bool(row.get(o.pair_field)))
        return template.format_map({**fields, **values, "mask": tokenizer.mask_token or ""})

    def _shortened(self, row: Mapping[str, Any], tokenizer: Any, max_length: int) -> list[int]:
        """The prompt of a row that is too long, its longest text cut so the template's answer cue stays."""
        o = self.options
        values = {"text": str(row[o.text_field]), "text_pair": str(row.get(o.pair_field) or "")}
        for _ in range(4):
            ids = tokenizer(self._prompt(row, tokenizer, values), add_special_tokens=True)["input_ids"]
            if len(ids) <= max_length:
                return list(ids)
            longest = max(values, key=lambda k: len(values[k]))
            pieces = tokenizer(values[longest], add_special_tokens=False)["input_ids"]
            values[longest] = tokenizer.decode(pieces[: max(1, len(pieces) - (len(ids) - max_length) - 2)])
        return list(ids[:1]) + list(ids[len(ids) - max_length + 1 :])

    def collate(self, features: Sequence[dict], tokenizer: Any) -> dict[str, Any]:
        import torch

        inputs = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features]
        batch = dict(tokenizer.pad(inputs, return_tensors="pt"))
        batch["label_token_ids"] = torch.tensor([f["label_token_ids"] for f in features], dtype=torch.long)
        if self.masked:
            width = batch["input_ids"].shape[1]
            left = getattr(tokenizer, "padding_side", "right") == "left"
            batch["answer_positions"] = torch.tensor(
                [f["answer_positions"] + (width - len(f["input_ids"]) if left else 0) for f in features], dtype=torch.long)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch

    # --------------------------------------------------------------------------------------- model
    def build_model(self, model_path: Any, tokenizer: Any) -> Any:
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if self.options.model_type == "auto":  # encoders (BERT, XLM-R) have a masked-LM class; decoders do not
            config = AutoConfig.from_pretrained(model_path)
            self.masked = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        model = VerbalizerModel.from_lm(model_path, masked=self.masked, loss=self.options.loss)
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return model

    def head_modules(self, model: Any) -> list[str]:
        return []  # no new weights: the LM head scores the label words


@hookimpl
def xft_task_heads():
    yield TaskHeadSpec(
        name="prompt-classification",
        options=VerbalizerOptions,
        build=PromptClassification,
        description="Classification by label words scored with the model's own LM head after a prompt template "
                    "(decoders: next token, encoders: masked token); transfers across languages far better than a new head.",
    )


# ---------------------------------------------------------------------------------- transfer-suite recipes
SUITE_LORA = {"r": 16, "alpha": 32, "dropout": 0.05}  # the suite's LoRA settings (docs/transfer.md)


# self-training in the suite: one round, as many steps as the labelled budget, the teacher calibrated per language
# before it labels, the kept rows balanced over the predicted classes (no threshold: the balance keeps each class's
# most confident rows)
SELF_TRAINING = {"rounds": 1, "threshold": 0.0, "balance": True, "calibration": "batch"}


def _verbalizer(*, top_layers: int = 0, training: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                template: str | None = None, self_training: Mapping[str, Any] | None = None) -> Any:
    def config(task: RecipeTask) -> dict[str, Any]:
        options = {**SUITE_LORA, **({"top_layers": top_layers} if top_layers else {})}
        fragment: dict[str, Any] = {
            "task": "prompt-classification", "strategy": "lora", "strategy_options": options,
            "task_options": {"template": template or task.template, "label_words": dict(task.label_words)}}
        extra = dict(training or {})
        if extra.get("average_checkpoints"):  # checkpoints to average: 5 over the budget
            extra.update(save_every=max(1, task.steps // 5), keep_checkpoints=5)
        if extra:
            fragment["training"] = extra
        if data:  # few-shot rows come from the evaluation languages' train split
            fragment["data"] = {**data, "eval_languages": [task.source, *task.targets]}
        if self_training is not None:
            fragment["self_training"] = {**SELF_TRAINING, **self_training, "steps": task.steps,
                                         "languages": list(task.targets)}
            fragment["data"] = {"unlabelled_split": task.unlabelled_split}
        return fragment

    return config


@hookimpl
def xft_transfer_recipes():
    yield RecipeSpec(name="verbalizer", config=_verbalizer(), default=True,
                     description="prompt-based fine-tuning: label words scored by the LM head, LoRA on all layers")
    yield RecipeSpec(name="verbalizer-top6", config=_verbalizer(top_layers=6), default=True,
                     description="the verbalizer with only the top 6 layers adapted")
    yield RecipeSpec(name="verbalizer-avg", config=_verbalizer(training={"average_checkpoints": 3}), default=True,
                     description="the verbalizer, final weights averaged over the last 3 of 5 checkpoints")
    yield RecipeSpec(name="verbalizer-wise", config=_verbalizer(), derived_from="verbalizer", evaluation={"scale": 0.5},
                     default=True, description="the verbalizer's adapters interpolated halfway to the base (WiSE-FT, scale 0.5)")
    yield RecipeSpec(name="verbalizer-bc", config=_verbalizer(), derived_from="verbalizer", needs=("unlabelled",),
                     evaluation={"calibration": "batch"},
                     description="the verbalizer's adapter, each target's label prior estimated from its unlabelled text "
                                 "and subtracted (batch calibration; no training)")
    yield RecipeSpec(name="verbalizer-bcl", config=_verbalizer(), derived_from="verbalizer", needs=("unlabelled",),
                     evaluation={"calibration": "batch-log"},
                     description="the verbalizer's adapter, each target's mean log-probability per label over its "
                                 "unlabelled text subtracted (batch calibration in log space; no training)")
    yield RecipeSpec(name="verbalizer-cc", config=_verbalizer(), derived_from="verbalizer",
                     evaluation={"calibration": "contextual"},
                     description="the verbalizer's adapter, each target's label prior from content-free inputs subtracted "
                                 "(contextual calibration; no training, no text needed)")
    yield RecipeSpec(name="verbalizer-dc", config=_verbalizer(), derived_from="verbalizer", needs=("unlabelled",),
                     evaluation={"calibration": "domain"},
                     description="the verbalizer's adapter, each target's label prior from 20 inputs of random tokens of "
                                 "its unlabelled text subtracted (domain-context calibration, Fei et al. 2023; no training)")
    yield RecipeSpec(name="verbalizer-st", config=_verbalizer(self_training={}), teacher_from="verbalizer",
                     needs=("unlabelled",),
                     description="the verbalizer, then one round of self-training: its adapter, calibrated per target "
                                 "(batch), labels each target's unlabelled text, its most confident rows balanced per "
                                 "class train with the English rows (as many steps again, from the teacher's weights)")
    for method, short in (("batch", "bc"), ("batch-log", "bcl"), ("contextual", "cc"), ("domain", "dc")):
        yield RecipeSpec(name=f"verbalizer-st-{short}", config=_verbalizer(self_training={}), derived_from="verbalizer-st",
                         needs=("unlabelled",), evaluation={"calibration": method},
                         description=f"verbalizer-st's student calibrated per target ({method}) before evaluation")
    # self-training whose teacher is calibrated another way before it labels, and its student calibrated so too
    for method, teacher, student, how, too in (
            ("contextual", "verbalizer-stcc", "cc", "the teacher's label prior per target from content-free inputs "
             "(contextual calibration) instead of its unlabelled text", "from content-free inputs too"),
            ("batch-log", "verbalizer-stbl", "bcl", "the teacher calibrated per target in log space (batch-log, the "
             "calibration that scored best on every test row of SIB-200 and XNLI) before it labels", "(batch-log) too")):
        config = _verbalizer(self_training={"calibration": method})
        yield RecipeSpec(name=teacher, config=config, teacher_from="verbalizer", needs=("unlabelled",),
                         description=f"verbalizer-st with {how}")
        yield RecipeSpec(name=f"{teacher}-{student}", config=config, derived_from=teacher, needs=("unlabelled",),
                         evaluation={"calibration": method}, description=f"{teacher}'s student calibrated per target {too}")
    yield RecipeSpec(name="verbalizer-auto", config=_verbalizer(template="auto"),
                     description="the verbalizer with template: auto (from the label names, else the best of topic, "
                                 "sentiment and answer zero-shot on the source's dev rows) instead of the task's template")
    yield RecipeSpec(name="verbalizer-8shot", config=_verbalizer(data={"few_shot": 8}),
                     description="the verbalizer with 8 labelled rows of each target language (few-shot, not zero-shot)")
