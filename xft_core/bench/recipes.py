"""The recipes the transfer suite compares: each is a config fragment over plugins (plus evaluation options).

A recipe names the task head, strategy and options it trains with; recipes marked `derived_from` reuse another
recipe's trained adapters and only evaluate them differently (WiSE-FT scale), so they cost no training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xft_core.bench.tasks import SuiteTask

LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    kinds: tuple[str, ...] = ("classification",)  # task kinds it applies to
    head: str = "prompt-classification"  # the task head for classification ("token-classification" for tagging)
    strategy: str = "lora"
    strategy_options: dict[str, Any] = field(default_factory=lambda: dict(LORA))
    learning_rate: float = 5e-4
    training: dict[str, Any] = field(default_factory=dict)  # extra training keys
    data: dict[str, Any] = field(default_factory=dict)  # extra data keys (few_shot)
    sampler: str = "proportional"
    derived_from: str = ""  # evaluate that recipe's adapters instead of training
    scale: float | None = None  # evaluation: adapter scale (WiSE-FT)
    language_adapters: bool = False  # needs the suite's per-language LM adapters (MAD-X)


RECIPES = {r.name: r for r in [
    Recipe("lora-head", "LoRA (all layers) + a new classification head: plain fine-tuning, the baseline",
           kinds=("classification", "tagging"), head="sequence-classification"),
    Recipe("lora-head-top6", "the baseline with only the top 6 layers adapted (the speed shortcut)",
           kinds=("classification", "tagging"), head="sequence-classification",
           strategy_options={**LORA, "top_layers": 6}),
    Recipe("verbalizer", "prompt-based fine-tuning: label words scored by the LM head, LoRA on all layers"),
    Recipe("verbalizer-top6", "the verbalizer with only the top 6 layers adapted",
           strategy_options={**LORA, "top_layers": 6}),
    Recipe("verbalizer-avg", "the verbalizer, final weights averaged over the last 3 of 5 checkpoints",
           kinds=("classification", "tagging"), training={"average_checkpoints": 3}),
    Recipe("verbalizer-wise", "the verbalizer's adapters interpolated halfway to the base (WiSE-FT, scale 0.5)",
           derived_from="verbalizer", scale=0.5),
    Recipe("prompt-tuning", "a soft prompt of 20 virtual tokens (base frozen), verbalizer scoring",
           strategy="prompt-tuning", strategy_options={"num_virtual_tokens": 20}, learning_rate=3e-2),
    Recipe("madx", "MAD-X: a language adapter per language (LM objective) under the task adapter",
           kinds=("classification", "tagging"), strategy="madx", language_adapters=True),
    Recipe("verbalizer-8shot", "the verbalizer with 8 labelled rows of each target language (few-shot, not zero-shot)",
           data={"few_shot": 8}),
]}
DEFAULT_RECIPES = ("lora-head", "lora-head-top6", "verbalizer", "verbalizer-top6", "verbalizer-avg", "verbalizer-wise",
                   "prompt-tuning", "madx")
BASELINE = "lora-head"


def run_config(recipe: Recipe, task: SuiteTask, *, name: str, out: str, model: str, data: str, seed: int, steps: int,
               batch_size: int, language_adapters: str = "") -> dict[str, Any]:
    """The `xft train` config of one recipe on one task and seed."""
    head = recipe.head if task.kind == "classification" else "token-classification"
    task_options: dict[str, Any] = {}
    if head == "prompt-classification":
        task_options = {"template": task.template, "label_words": dict(task.label_words)}
    strategy_options = dict(recipe.strategy_options)
    if recipe.language_adapters:
        strategy_options = {**strategy_options, "language_adapters": language_adapters, "source_language": task.source}
    training: dict[str, Any] = {"max_steps": steps, "batch_size": batch_size, "learning_rate": recipe.learning_rate,
                                "warmup_ratio": 0.1, "max_length": task.max_length, "seed": seed, "log_every": 10,
                                "eval_batch_size": 64, "precision": "auto"}
    if recipe.training.get("average_checkpoints"):
        training.update(save_every=max(1, steps // 5), keep_checkpoints=5)
    training.update(recipe.training)
    return {
        "name": name, "output_dir": out, "model": model, "task": head, "task_options": task_options,
        "strategy": recipe.strategy, "strategy_options": strategy_options, "adapters": "single",
        "sampler": recipe.sampler,
        # dev rows (where the task has them) only for the run's own log: the suite scores the test split afterwards
        "data": {"path": data, "train_languages": [task.source], "eval_languages": task.languages,
                 "dev_split": "dev", "max_eval_examples": 16, **recipe.data},
        "training": training, "data_check": False,
    }
