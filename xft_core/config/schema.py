"""The run configuration's sections as typed, frozen dataclasses, checked in `__post_init__`.

Every key a user may write is a field here, with its default and a comment; `xft_core.config.load` builds these
from YAML and `--set` overrides, naming the key and the valid choices when a value is wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xft_core.util.errors import UserError


class ConfigError(UserError):
    """A config file, key or value is wrong; the message says where and what is valid."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    path: str = ""  # folder of <lang>.<split>.{jsonl,csv,tsv}, or one file with a `language` column
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # explicit {split: {language: file}}
    rows: dict[str, dict[str, list]] = field(default_factory=dict)  # inline {split: {language: [row, ...]}}
    train_languages: list[str] = field(default_factory=list)  # empty: every language with a train file
    # instead of train_languages: the k best source languages of a target, read from the sources.json `xft eval`
    # wrote ({target: swh, k: 3, ranking: runs/x/report/sources.json}); the target's own adapters are left out
    best_sources: dict[str, Any] = field(default_factory=dict)
    eval_languages: list[str] = field(default_factory=list)  # empty: the train languages
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    language_field: str = "language"  # the column holding each row's language, where one file or table holds several
    # languages read from a data source that keeps each language apart (a Hub dataset with one config per language);
    # empty: train_languages + eval_languages, else all
    languages: list[str] = field(default_factory=list)
    # at most N rows per language (0 = all), drawn across the file, reproducibly, each label keeping its share
    # (xft_core/data/sampling.py): not the first N, which in a file sorted by label is one class
    max_train_examples: int = 0
    max_eval_examples: int = 0  # per language and split
    # few-shot transfer: K labelled rows of each evaluation language without training data join the training,
    # drawn with the run's seed from that language's train split (never from dev or test); 0 = zero-shot
    few_shot: int = 0
    # text without labels (calibration, self-training, language adapters): the split of <lang>.unlabelled.{jsonl,txt}
    # files, and other splits whose texts are used too, their labels dropped. Rows repeating an evaluation row (the
    # test split, the dev split of evaluated languages) are dropped with a warning
    unlabelled_split: str = "unlabelled"
    unlabelled_from: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.test_split in self.unlabelled_from:
            raise ConfigError(f"data.unlabelled_from: {self.test_split!r} is the test split (data.test_split); its texts "
                              "are evaluation rows and may never be learnt from. Name other splits")
        if self.unlabelled_split in (self.dev_split, self.test_split):  # (training on it is language modelling)
            raise ConfigError(f"data.unlabelled_split: {self.unlabelled_split!r} is also the dev or test split, whose rows "
                              "are evaluation rows; give unlabelled text a split of its own (default: unlabelled)")
        if self.best_sources:
            check_best_sources(self.best_sources, bool(self.train_languages))
        if self.few_shot < 0:
            raise ConfigError(f"data.few_shot must be >= 0 (rows per target language; 0 = zero-shot), got {self.few_shot}")
        if not self.path and not self.files and not self.rows:
            raise ConfigError(
                "data: set `data.path` (a folder or file), `data.files` ({split: {language: file}}) "
                "or `data.rows` ({split: {language: [rows]}})"
            )


BEST_SOURCES_KEYS = {"target": "the language to find sources for", "k": "how many sources (default 3)",
                     "ranking": "the sources.json of `xft eval` (report folder)"}


def check_best_sources(value: dict[str, Any], with_train_languages: bool) -> None:
    key = "data.best_sources"
    unknown = sorted(set(value) - set(BEST_SOURCES_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)}. Valid keys: "
                          + "; ".join(f"{k} ({v})" for k, v in BEST_SOURCES_KEYS.items()))
    for name in ("target", "ranking"):
        if not isinstance(value.get(name), str) or not value[name]:
            raise ConfigError(f"{key}.{name} is required: {BEST_SOURCES_KEYS[name]}")
    k = value.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{key}.k must be a positive integer, got {k!r}")
    if with_train_languages:
        raise ConfigError(f"{key} and data.train_languages exclude each other: {key} chooses the training languages")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    max_steps: int = 100
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0
    max_length: int = 128
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    seed: int = 42
    eval_every: int = 0  # steps; 0 = only at the end
    save_every: int = 0  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_batch_size: int = 32
    early_stopping_patience: int = 0  # evaluations without improvement; 0 = off
    early_stopping_metric: str = ""  # default: the head's primary metric, averaged over dev languages
    load_best_at_end: bool = False
    # checkpoint averaging (Schmidt et al. 2023): the final adapters average the trainable weights of the last N
    # checkpoints (taken every save_every steps); 0 or 1 = off
    average_checkpoints: int = 0
    # dtype of the frozen base weights: auto = the mixed precision (bf16 on capable CPUs and GPUs), so no matmul
    # casts them on every step; trainable weights stay float32. Or a quantizer's name (xft_base_quantizers): nf4 keeps
    # the base's linear layers in 4 bits (QLoRA, plugin xft_bnb, needs xft[qlora]), checked when the run starts
    base_dtype: str = "auto"
    group_by_length: bool = True  # batches of similar length (less padding); order within a language stays random
    cpu: bool = False  # force CPU even where a GPU is present
    # experiment trackers, Accelerate's names (tensorboard, mlflow, trackio, wandb, ...); local files go to <run>/trackers
    report_to: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"training.{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("eval_every", "save_every", "early_stopping_patience", "log_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ConfigError(f"training.learning_rate must be positive, got {self.learning_rate}")
        if self.load_best_at_end and not self.eval_every:
            raise ConfigError("training.load_best_at_end needs training.eval_every > 0 (best is chosen among evaluations)")
        if self.average_checkpoints < 0:
            raise ConfigError(f"training.average_checkpoints must be >= 0, got {self.average_checkpoints}")
        if self.average_checkpoints > 1:
            if not self.save_every:
                raise ConfigError("training.average_checkpoints needs training.save_every > 0 (the checkpoints to average)")
            if self.keep_checkpoints and self.keep_checkpoints < self.average_checkpoints:
                raise ConfigError(f"training.keep_checkpoints ({self.keep_checkpoints}) must be at least "
                                  f"training.average_checkpoints ({self.average_checkpoints}), or 0 to keep all")
            if self.load_best_at_end:
                raise ConfigError("training.average_checkpoints and training.load_best_at_end exclude each other")
        if self.report_to:
            check_report_to(self.report_to)
        if not isinstance(self.base_dtype, str) or not self.base_dtype.strip():
            raise ConfigError("training.base_dtype must be auto, float32, bfloat16, float16 or a quantizer's name "
                              f"(nf4: a 4-bit base, QLoRA), got {self.base_dtype!r}")


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """After training, estimate each target language's label prior and store it in the packages (`xft calibrate`)."""

    # batch, batch-log, domain: from unlabelled text; contextual: from content-free inputs (docs/transfer.md)
    method: Literal["none", "batch", "batch-log", "contextual", "domain"] = "none"
    # empty: every language with unlabelled text (contextual: and every evaluated one) not trained on
    languages: list[str] = field(default_factory=list)
    max_rows: int = 500  # unlabelled rows per language

    def __post_init__(self):
        if self.max_rows <= 0:
            raise ConfigError(f"calibration.max_rows must be a positive integer, got {self.max_rows}")


@dataclass(frozen=True, kw_only=True)
class SelfTrainingConfig:
    """Self-training on unlabelled target text (Dong & de Melo 2019): the trained adapter labels each target
    language's unlabelled rows, the confident ones (balanced per class) join the training, for `rounds` rounds."""

    rounds: int = 0  # 0: off
    languages: list[str] = field(default_factory=list)  # targets; empty: every language with unlabelled text not trained on
    threshold: float = 0.0  # least confidence of a kept pseudo-label (its probability; tagging: per word)
    per_class: int = 0  # at most this many rows per class and language and round (0: no cap)
    balance: bool = True  # the same number of rows of every predicted class per language (the rarest class's count)
    max_rows: int = 0  # per language: unlabelled rows read (0: all) and pseudo-labelled rows kept at most (tagging)
    # the teacher's label prior corrected before labelling
    calibration: Literal["none", "batch", "batch-log", "contextual", "domain"] = "batch"
    steps: int = 0  # training steps of each round (0: training.max_steps)
    learning_rate: float = 0.0  # of each round (0: training.learning_rate)
    adapters: Literal["single", "per_language"] = "single"  # one multilingual student, or one per language
    start: Literal["teacher", "base"] = "teacher"  # each round's adapter starts from the teacher's weights, or afresh
    keep_source: bool = True  # the labelled source rows train in every round too
    # a trained run folder that teaches round 1 instead of training round 0 again (copied to rounds/round-0, never
    # changed): self-train from the adapter you have
    teacher: str = ""

    def __post_init__(self):
        if self.rounds < 0:
            raise ConfigError(f"self_training.rounds must be >= 0 (0 = off), got {self.rounds}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"self_training.threshold must be in [0, 1), got {self.threshold}")
        for name in ("per_class", "max_rows", "steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"self_training.{name} must be >= 0 (0 = no limit / the default), got {getattr(self, name)}")
        if self.learning_rate < 0:
            raise ConfigError(f"self_training.learning_rate must be >= 0 (0 = training.learning_rate), got {self.learning_rate}")
        if self.teacher and not self.rounds:
            raise ConfigError(f"self_training.teacher {self.teacher!r} teaches round 1, but self_training.rounds is 0 "
                              "(off): set rounds to 1 or more, or leave teacher empty")


def check_report_to(names: list[str], key: str = "training.report_to") -> None:
    """Each name must be a tracker Accelerate knows (whether its package is installed is checked when training starts)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS  # imported only when trackers are asked for (it loads torch)

    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"{key}: unknown tracker {name!r}. Choose from: {', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")


def is_plain_name(name: str) -> bool:
    """A single folder name: a run's `name` never reaches outside `output_dir`."""
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
            and not Path(name).is_absolute())


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    name: str = "run"  # the run folder's name under output_dir: one plain folder name
    output_dir: str = "runs"
    model: str = "gemma3-270m"
    task: str = "prompt-classification"  # the best transferring recipe for classification (docs/transfer.md)
    task_options: dict[str, Any] = field(default_factory=dict)
    strategy: str = "lora"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    adapters: Literal["single", "per_language"] = "single"
    init_from: str = ""  # start the adapters from this package (same base, task, labels and order; checked first)
    sampler: str = "temperature"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    data: DataConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # unlabelled target text: self-training rounds after the labelled training, a label-prior calibration at the end
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    data_check: bool = True  # run the cheap data checks before training and warn

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def __post_init__(self):
        if not is_plain_name(self.name):
            raise ConfigError(f"name: {self.name!r} is not a plain folder name (config key: name). The run folder is "
                              "<output_dir>/<name>, so the name may not be empty, '.' or '..', absolute, or hold '/' or '\\'; "
                              "put parent folders in output_dir.")
        if self.data.few_shot and self.adapters == "per_language":
            raise ConfigError("data.few_shot adds target-language rows to one shared adapter: use adapters: single")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
