"""`Run`: everything one training run holds, typed and complete from the moment `prepare` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xft_core.util.runfiles import RunPaths

if TYPE_CHECKING:
    import pluggy
    from accelerate import Accelerator
    from rich.console import Console

    from xft_core.config import RunConfig
    from xft_core.data import DataSet, Split
    from xft_core.hooks import LanguageSampler, Strategy, StrategySpec, TaskHead
    from xft_core.training.streams import LanguageStream


@dataclass
class Run:
    """One training run; `xft_core.train` returns it finished (metrics, history, adapter folders)."""

    config: RunConfig
    paths: RunPaths
    pm: pluggy.PluginManager
    console: Console
    head: TaskHead
    strategy: Strategy
    strategy_spec: StrategySpec
    sampler: LanguageSampler
    accelerator: Accelerator
    model_path: Path
    tokenizer: Any
    model: Any  # the strategy's model, wrapped by Accelerate while training
    data: DataSet
    train: dict[str, Split]  # training rows per language
    dev: dict[str, Split]  # dev rows per evaluation language
    features: dict[str, list[dict[str, Any]]]  # training rows encoded once, per language
    streams: dict[str, LanguageStream]
    adapter_names: list[str]  # per_language: the languages; single: one name
    eval_languages: list[str]
    few_shot_languages: list[str] = field(default_factory=list)  # target languages with `data.few_shot` rows
    init_from: dict[str, Any] = field(default_factory=dict)  # the package the adapters started from: path, sha256
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # last dev metrics per language
    best: dict[str, Any] = field(default_factory=dict)
    should_stop: bool = False
    examples_per_second: float = 0.0
    trainable_parameters: int = 0
    adapter_dirs: dict[str, Path] = field(default_factory=dict)
    wall_seconds: float = 0.0
    last_eval_step: int = -1
    padding_share: float = 0.0  # padding tokens / all tokens of the training batches
    averaged_steps: list[int] = field(default_factory=list)  # checkpoints averaged into the final weights

    @property
    def per_language(self) -> bool:
        return self.config.adapters == "per_language"

    @property
    def train_languages(self) -> list[str]:
        """The languages trained on with all their rows (few-shot languages are not among them)."""
        return [lang for lang in self.train if lang not in self.few_shot_languages]

    def adapter_for(self, language: str) -> str | None:
        """The adapter that trains on and answers for `language` (None: the single set of weights)."""
        if self.per_language:
            return language if language in self.adapter_names else None
        return None

    def unwrapped_model(self) -> Any:
        return self.accelerator.unwrap_model(self.model)
