"""Strategy `madx`: language adapters stacked under a task adapter (MAD-X, Pfeiffer et al. 2020), with LoRA.

Language adapters are LoRA packages, one per language, trained on unlabelled text with the model's own objective
(`task: language-modeling, strategy: lora, adapters: per_language`). A `madx` run (`strategy_options.
language_adapters` names that run) loads them all frozen and trains one task adapter (and any new head) on top of
the batch's language adapter: each adapted layer computes W x + B_lang A_lang x + B_task A_task x (peft, several
active LoRA adapters). At inference the rows' language picks the language adapter under the same task adapter; a
language without its own adapter runs on the source language's (warned once). The source language is
`strategy_options.source_language`, else the run's one training language (xft.json), else the only language
adapter; without one, a language lacking an adapter is an error.

Module paths are mapped through the transformer body: the language model's `model.layers.0.q_proj` is the task
model's `lm.model.layers.0.q_proj` (prompt-classification) or `backbone.layers.0.q_proj` (mean pooling); LoRA on the
language model's own head (an encoder's masked-LM transform) is left out; a path finding no module, or several, is
an error. A package holds the task adapter in peft's format at its root, each language adapter in peft's format
(task model paths) under `languages/<lang>/`, and `madx.json`. By hand with peft, for every task head::

    model = PeftModel.from_pretrained(base, f"{folder}/languages/de", adapter_name="de")
    model.load_adapter(folder, adapter_name="task")
    model.base_model.set_adapter(["de", "task"])   # what xft runs for German rows
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Sequence

import xft_peft
from xft_core.hooks import RecipeSpec, RecipeTask, StrategySpec, TaskHead, hookimpl
from xft_core.util.languages import normalize
from xft_lora.language_adapters import (
    add_language_adapter,
    check_same_base,
    find_language_adapters,
    read_language_adapter,
    safe_name,
    transformer_body,
)
from xft_lora.options import LoraOptions
from xft_lora.strategy import Lora
from xft_peft import CONFIG, WEIGHTS, base_only, save_peft_files

TASK = "task"  # peft's name for the task adapter while training
MADX = "madx.json"
LANGUAGES = "languages"
MANIFEST = "xft.json"  # xft's package manifest: base fingerprint, task, languages
PREFIX = "base_model.model."  # peft's key prefix for a wrapped transformers model


@dataclass(frozen=True, kw_only=True)
class MadxOptions(LoraOptions):  # the task adapter's LoRA options, and the language adapters
    language_adapters: str = ""  # a run of language adapters (language-modeling, per_language) or its adapters/ folder
    source_language: str = ""  # the task's training language, the fallback for languages without an adapter


@dataclass
class _Stack:  # one task adapter and the language adapters under it, by their peft adapter names
    task: str
    languages: dict[str, str]  # language -> peft adapter name
    source: str | None
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)  # language -> peft-format tensors as loaded
    warned: set[str | None] = field(default_factory=set)


class Madx:
    def __init__(self, options: MadxOptions):
        self.options = options
        self.lora = Lora(options)  # the task adapter's LoraConfig
        self.mixed_batch = False  # peft routes a row through one adapter, not a stack: one forward per language
        self._training = False
        self._stacks: dict[str, _Stack] = {}  # task adapter name -> its stack
        self._scales: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ training
    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        from peft import get_peft_model

        packages = find_language_adapters(self.options.language_adapters)
        check_same_base(model, packages)
        source = self.options.source_language or (next(iter(packages)) if len(packages) == 1 else None)
        if source is not None and source not in packages:
            raise ValueError(f"madx: source_language '{source}' has no language adapter in "
                             f"{self.options.language_adapters} (languages: {', '.join(packages)})")
        names, body = {name for name, _ in model.named_modules()}, transformer_body(model)
        loaded = {lang: read_language_adapter(folder, names, body)  # all read and mapped before the model changes
                  for lang, (folder, _) in packages.items()}
        peft_model = get_peft_model(model, self.lora.config(model, head), adapter_name=TASK)
        stack = _Stack(TASK, {}, source)
        for language, (config, weights) in loaded.items():
            add_language_adapter(peft_model, _slot(TASK, language), config, weights, packages[language][0])
            stack.languages[language], stack.weights[language] = _slot(TASK, language), weights
        self._stacks[TASK] = stack
        self._training = True
        peft_model.base_model.set_adapter([TASK], inference_mode=True)
        _only_task_trains(peft_model, TASK)
        return peft_model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        stack = self._stack(adapter or TASK)
        wanted = [stack.languages[self._language(stack, language)], stack.task]
        if list(model.base_model.active_adapters) == wanted:
            return
        model.base_model.set_adapter(wanted, inference_mode=True)
        model.active_adapter = stack.task  # PeftModel reads its task type from one adapter's config
        if self._training:
            _only_task_trains(model, stack.task)

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start the task adapter from a saved LoRA or madx package of the same task model (its root adapter)."""
        self.lora.init_from(model, folder, [TASK])

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> dict[str, Any]:
        folder = Path(folder)
        stack = self._stack(adapter or TASK)
        self.lora.save(model, folder, stack.task, head)  # peft's files: plain peft loads the task adapter
        paths = {language: f"{LANGUAGES}/{safe_name(language)}" for language in sorted(stack.languages)}
        for language, sub in paths.items():
            (folder / sub).mkdir(parents=True, exist_ok=True)
            # the tensors as loaded: a base cast to bf16 for training must not round the language adapters
            save_peft_files(model, stack.languages[language], folder / sub, stack.weights[language])
        (folder / MADX).write_text(json.dumps({"format": 1, "task_adapter": ".", "languages": paths,
                                               "source_language": stack.source}, indent=2) + "\n", encoding="utf-8")
        return {"serves": sorted(stack.languages)}  # the manifest: the router routes these languages here

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        from peft import PeftConfig, PeftModel
        from peft.utils import load_peft_weights

        folder = Path(folder)
        languages, source = _read_madx(folder)
        parts = {}  # read everything before the model changes
        for language, part in [(None, folder), *((lang, folder / sub) for lang, sub in languages.items())]:
            try:
                parts[language] = (PeftConfig.from_pretrained(str(part)), load_peft_weights(str(part), device="cpu"))
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{part}: missing {CONFIG} or {WEIGHTS} ({exc})") from None
            except Exception as exc:
                raise ValueError(f"{part}: cannot read the LoRA adapter ({type(exc).__name__}: {exc})") from None
        created = not isinstance(model, PeftModel)
        peft_model, added = None if created else model, [name]
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
            else:
                peft_model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            for language, sub in languages.items():
                config, weights = parts[language]
                config.inference_mode = True
                added.append(_slot(name, language))
                add_language_adapter(peft_model, added[-1], config, weights, folder / sub)
        except BaseException:
            for slot in reversed(added) if peft_model is not None else ():
                if slot in peft_model.peft_config:  # the last one out unwraps a PeftModel made here
                    peft_model = self.lora.detach(peft_model, slot)
            raise
        self._stacks[name] = _Stack(name, {lang: _slot(name, lang) for lang in languages}, source)
        return peft_model

    def detach(self, model: Any, name: str) -> Any:
        stack = self._stacks.pop(name, None)
        self._scales.pop(name, None)
        for slot in [*(stack.languages.values() if stack else ()), name]:
            if slot in model.peft_config:  # lora's detach unwraps the bare base once the last adapter is gone
                model = self.lora.detach(model, slot)
        return model

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """The task and the language adapters' LoRA updates times `factor` (peft's per-layer `set_scale`)."""
        if self._scales.get(adapter, 1.0) == factor:
            return
        from peft.tuners.lora import LoraLayer

        stack = self._stacks.get(adapter)
        slots = [adapter, *(stack.languages.values() if stack else ())]
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for slot in slots:
                    module.set_scale(slot, factor)
        self._scales[adapter] = factor

    def base_only(self, model: Any) -> ContextManager[Any]:
        return base_only(model)

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("madx: peft cannot route rows through stacks (mixed_batch is False)")

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """One language's model: the task adapter and `language`'s adapter under it (the source language's when
        `language` has none, or is None) merged into the weights. Other languages need their own export."""
        stack = self._stack(adapter)
        chosen = stack.source if language is None and stack.source else self._language(stack, language)
        self.activate(model, adapter, chosen)
        merged = model.merge_and_unload(adapter_names=[stack.languages[chosen], stack.task])
        self._stacks.pop(adapter, None)
        if "peft_config" in vars(merged):
            del merged.peft_config
        return merged.eval()

    def leftovers(self, model: Any) -> list[str]:
        return xft_peft.leftovers(model)

    def served_languages(self, model: Any, adapter: str | None) -> list[str]:
        """Every language a package serves with its own language adapter (for the manifest, if the engine asks)."""
        return sorted(self._stack(adapter or TASK).languages)

    # --------------------------------------------------------------------------------------------- parts
    def _stack(self, name: str) -> _Stack:
        if name not in self._stacks:
            raise ValueError(f"madx: no task adapter '{name}' (loaded: {', '.join(self._stacks) or 'none'})")
        return self._stacks[name]

    def _language(self, stack: _Stack, language: str | None) -> str:
        """The language whose adapter runs for `language`: its own, else the source language's."""
        if language in stack.languages:
            return language
        same = [lang for lang in stack.languages if language is not None and normalize(lang) == normalize(language)]
        if same:
            return same[0]
        available = ", ".join(sorted(stack.languages))
        if stack.source is None:
            raise ValueError(f"madx: no language adapter for {language!r} (adapters: {available}) and no source language "
                             "to fall back on; set strategy_options.source_language")
        if language not in stack.warned:
            stack.warned.add(language)
            what = f"no language adapter for '{language}'" if language is not None else "rows without a language"
            warnings.warn(f"madx: {what} (adapters: {available}); using the source language's ('{stack.source}') "
                          "under the task adapter", stacklevel=3)
        return stack.source


# ---------------------------------------------------------------------------------------- language adapters
def _only_task_trains(model: Any, task: str) -> None:
    """The task adapter and its head train; every language adapter stays frozen (the set never changes)."""
    marker = f".{task}."
    for name, parameter in model.named_parameters():
        if ".lora_" in name or ".modules_to_save." in name:
            parameter.requires_grad = marker in name


def _read_madx(folder: Path) -> tuple[dict[str, str], str | None]:
    """(language -> sub-folder, source language) of a saved madx package."""
    if not (folder / MADX).is_file():
        raise FileNotFoundError(f"{folder}: no {MADX} (not a madx package: its language adapters are unknown)")
    data = json.loads((folder / MADX).read_text(encoding="utf-8"))
    languages = dict(data.get("languages") or {})
    if not languages or any(Path(sub).is_absolute() or ".." in Path(sub).parts for sub in languages.values()):
        raise ValueError(f"{folder / MADX}: 'languages' must map each language to a folder inside the package")
    trained = []
    with contextlib.suppress(OSError, ValueError):
        trained = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("languages") or []
    for source in (data.get("source_language"), trained[0] if len(trained) == 1 else None,
                   next(iter(languages)) if len(languages) == 1 else None):
        if source in languages:
            return languages, str(source)
    return languages, None


def _slot(task: str, language: str) -> str:
    return f"{task}__lang_{safe_name(language)}"


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="madx",
        options=MadxOptions,
        build=Madx,
        description="MAD-X with LoRA: frozen language adapters (language-modeling, one per language) under one task "
                    "adapter; the rows' language picks the language adapter. language_adapters, source_language, lora's.",
        per_language=False, stackable=True, language_adapters=True,
    )


# ---------------------------------------------------------------------------------- transfer-suite recipe
SUITE_LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


def _language_adapters_name(task: RecipeTask) -> str:
    return f"language-adapters-{task.options.get('language_adapter_steps', 100)}"


def _prepare(task: RecipeTask) -> dict[str, dict[str, Any]]:
    """One LoRA language adapter per language of the task (causal LM on its unlabelled text, batch 8), once per task."""
    steps = int(task.options.get("language_adapter_steps", 100))
    languages = [task.source, *task.targets]
    return {_language_adapters_name(task): {
        "task": "language-modeling", "strategy": "lora", "strategy_options": SUITE_LORA, "adapters": "per_language",
        "sampler": "round_robin",
        # the unlabelled text is this run's training split; data.unlabelled_split must then name another one
        "data": {"train_split": task.unlabelled_split, "unlabelled_split": f"{task.unlabelled_split}-none",
                 "train_languages": languages, "eval_languages": []},
        "training": {"max_steps": steps * len(languages), "batch_size": 8, "learning_rate": 5e-4,
                     "max_length": task.max_length, "seed": 0, "log_every": 20}}}


def _config(task: RecipeTask) -> dict[str, Any]:
    head = "prompt-classification" if task.kind == "classification" else "token-classification"
    fragment: dict[str, Any] = {"task": head, "strategy": "madx", "strategy_options": {
        **SUITE_LORA, "language_adapters": task.resources[_language_adapters_name(task)], "source_language": task.source}}
    if head == "prompt-classification":
        fragment["task_options"] = {"template": task.template, "label_words": dict(task.label_words)}
    return fragment


@hookimpl
def xft_transfer_recipes():
    yield RecipeSpec(name="madx", config=_config, prepare=_prepare, kinds=("classification", "tagging"), default=True,
                     needs=("unlabelled",),
                     description="MAD-X: a language adapter per language (LM objective) under the task adapter")
