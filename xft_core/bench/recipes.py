"""The suite's recipes: `RecipeSpec`s contributed by plugins through `xft_transfer_recipes`, and the run config of
one recipe on one task and seed (the suite's base config with the recipe's fragment merged over it).

The engine names no recipe, head or strategy here: the baseline and the default recipes are descriptor fields.
"""

from __future__ import annotations

from typing import Any, Mapping

from xft_core.bench.tasks import SuiteTask
from xft_core.evaluation.calibration import FROM_TEXT
from xft_core.evaluation.calibration import METHODS as CALIBRATIONS
from xft_core.hooks import PluginError, RecipeSpec, RecipeTask

EVALUATION_OPTIONS = {"scale": "WiSE-FT factor (0 = base, 1 = adapter)", "calibration": " | ".join(CALIBRATIONS)}


def installed_recipes(pm: Any = None) -> dict[str, RecipeSpec]:
    """Every recipe the installed plugins contribute, by name (duplicates are an error naming both plugins)."""
    from xft_core.hooks.manager import collect, get_plugin_manager

    return {name: provided.spec for name, provided in collect(pm or get_plugin_manager(), "transfer_recipes").items()}


def recipe_plugins(pm: Any = None) -> dict[str, str]:
    """Recipe name -> the plugin that contributes it (for `--list` and messages)."""
    from xft_core.hooks.manager import collect, get_plugin_manager

    return {name: provided.plugin for name, provided in collect(pm or get_plugin_manager(), "transfer_recipes").items()}


def baseline_of(recipes: Mapping[str, RecipeSpec]) -> str:
    """The recipe marked `baseline=True` ('' when none is installed; two are an error naming both)."""
    marked = [name for name, spec in recipes.items() if spec.baseline]
    if len(marked) > 1:
        raise PluginError(f"Several transfer recipes claim to be the suite's baseline: {', '.join(marked)}. "
                          "Block one plugin with XFT_BLOCK_PLUGINS")
    return marked[0] if marked else ""


def default_recipes(recipes: Mapping[str, RecipeSpec]) -> list[str]:
    return [name for name, spec in recipes.items() if spec.default]


def check_recipe(spec: RecipeSpec, known: Mapping[str, RecipeSpec]) -> None:
    """What the suite cannot run: unknown evaluation options, a derived recipe without its parent's training."""
    unknown = sorted(set(spec.evaluation) - set(EVALUATION_OPTIONS))
    if unknown:
        raise PluginError(f"Transfer recipe '{spec.name}': unknown evaluation option(s) {', '.join(unknown)}. "
                          f"Valid: {', '.join(f'{k} ({v})' for k, v in EVALUATION_OPTIONS.items())}")
    calibration = spec.evaluation.get("calibration")
    if calibration is not None and calibration not in CALIBRATIONS:
        raise PluginError(f"Transfer recipe '{spec.name}': evaluation calibration {calibration!r} is not one of "
                          f"{', '.join(CALIBRATIONS)}")
    if calibration in FROM_TEXT and "unlabelled" not in spec.needs:
        raise PluginError(f"Transfer recipe '{spec.name}' calibrates on target-language text: add 'unlabelled' to its needs")
    if spec.derived_from and spec.derived_from not in known:
        raise PluginError(f"Transfer recipe '{spec.name}' evaluates the adapters of '{spec.derived_from}', which no "
                          f"installed plugin provides. Installed: {', '.join(sorted(known))}")
    if spec.teacher_from and spec.teacher_from not in known:
        raise PluginError(f"Transfer recipe '{spec.name}' self-trains from the run of '{spec.teacher_from}', which no "
                          f"installed plugin provides. Installed: {', '.join(sorted(known))}")
    if spec.teacher_from and spec.derived_from:
        raise PluginError(f"Transfer recipe '{spec.name}' gives both derived_from (evaluate another recipe's adapters) "
                          "and teacher_from (train from another recipe's run): give one")


def parent_of(spec: RecipeSpec) -> str:
    """The recipe whose finished run this one needs: the one it evaluates or the one that teaches it ('' if none)."""
    return spec.derived_from or spec.teacher_from


def depth(spec: RecipeSpec, known: Mapping[str, RecipeSpec]) -> int:
    """How many recipes run before this one can (0: it trains from the base model); parents run first."""
    seen: list[str] = []
    while parent_of(spec):
        if spec.name in seen:
            raise PluginError(f"Transfer recipes {' -> '.join([*seen, spec.name])} need each other's runs in a circle")
        seen.append(spec.name)
        spec = known[parent_of(spec)]
    return len(seen)


def recipe_task(task: SuiteTask, *, steps: int, batch_size: int, unlabelled: bool, resources: Mapping[str, str] | None = None,
                options: Mapping[str, Any] | None = None) -> RecipeTask:
    return RecipeTask(name=task.name, kind=task.kind, source=task.source, targets=tuple(task.targets), steps=steps,
                      batch_size=batch_size, max_length=task.max_length, template=task.template,
                      label_words=dict(task.label_words), unlabelled_split=task.unlabelled_split if unlabelled else "",
                      resources=dict(resources or {}), options=dict(options or {}))


def base_config(task: SuiteTask, *, name: str, out: str, model: str, data: str, seed: int, steps: int,
                batch_size: int) -> dict[str, Any]:
    """What every recipe shares: the data (English source; dev rows only for the run's own log, the suite scores
    the test split afterwards), the step budget and its schedule, the precision. The recipe adds the rest."""
    return {
        "name": name, "output_dir": out, "model": model, "adapters": "single", "sampler": "proportional",
        "data": {"path": data, "train_languages": [task.source], "dev_split": "dev",  # evaluated: the source, if it has dev
                 "max_eval_examples": 16},
        "training": {"max_steps": steps, "batch_size": batch_size, "learning_rate": 5e-4, "warmup_ratio": 0.1,
                     "max_length": task.max_length, "seed": seed, "log_every": 10, "eval_batch_size": 64,
                     "precision": "auto"},
        "data_check": False,
    }


def run_config(spec: RecipeSpec, task: SuiteTask, info: RecipeTask, *, teacher: str = "", **base: Any) -> dict[str, Any]:
    """The `xft train` config of one recipe on one task and seed: `base_config(**base)` with `spec.config(info)`
    merged over it (nested sections key by key); `teacher`: the run folder of `spec.teacher_from`."""
    fragment = dict(spec.config(info))
    missing = [key for key in ("task", "strategy") if not fragment.get(key)]
    if missing:
        raise PluginError(f"Transfer recipe '{spec.name}' gives no {' or '.join(missing)} for task {task.name} "
                          "(RecipeSpec.config must return them)")
    if teacher:
        if not (fragment.get("self_training") or {}).get("rounds"):
            raise PluginError(f"Transfer recipe '{spec.name}' is taught by the run {teacher} (teacher_from) but its config "
                              "does not self-train (self_training.rounds): drop teacher_from or add self_training")
        fragment = merge(fragment, {"self_training": {"teacher": teacher}})
    return merge(base_config(task, **base), fragment)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, dictionaries merged key by key (a recipe's `training: {...}` keeps the budget's keys)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out
