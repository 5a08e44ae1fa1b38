"""The run folder before the first step: a fresh run never overwrites another's outputs; `--resume` continues
only the run its folder holds (same config, up to the keys listed below) from its newest usable checkpoint.

`config.yaml` is written once, when a run starts; `--resume` never rewrites it. The resolved config is compared
with it instead, key by key (nested keys dotted: `training.learning_rate`, `strategy_options.r`):

- keys in `SAFE_ON_RESUME` may differ: where the run folder is, how long it trains, how often it is evaluated,
  logged and checkpointed, and when early stopping ends it. They decide what is observed and saved, and for
  how long, not what one step computes;
- every other key (model, task and its options, strategy and its options, adapters, init_from, sampler and
  its options, data, seed, batch size, learning rate and schedule, precision, ...) changes what is trained, so
  a difference is a ConfigError naming the keys with both values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from xft_core.config import ConfigError, RunConfig, load_config, save_config
from xft_core.training.checkpoints import load_checkpoint, set_aside, usable_checkpoint
from xft_core.training.run import Run
from xft_core.util.files import recover_stale
from xft_core.util.runfiles import RunPaths, read_metrics_log, run_outputs

SAFE_ON_RESUME = {
    "name": "where the run folder is",
    "output_dir": "where the run folder is",
    "training.max_steps": "where the run ends (the learning-rate schedule, warmup and sampler schedule stretch to "
                          "the new end from the resumed step on)",
    "training.eval_every": "how often dev sets are scored",
    "training.save_every": "how often checkpoints are written",
    "training.log_every": "how often metrics are logged",
    "training.keep_checkpoints": "how many checkpoints are kept",
    "training.eval_batch_size": "the batch size of evaluation only",
    "training.early_stopping_patience": "when early stopping ends the run",
    "training.early_stopping_metric": "which dev metric early stopping and the best checkpoint follow",
    "data_check": "warnings before training only",
}
_ABSENT = object()  # a key one side does not have


def check_run_folder(config: RunConfig, resume: bool) -> None:
    """Refuse before anything loads (it only reads, so every process may run it): a fresh run in a folder that
    holds another run's outputs (FileExistsError), or a resume whose config changes what is trained (ConfigError)."""
    paths = RunPaths(config.run_dir)
    if not resume:
        found = run_outputs(paths)
        if found:
            shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
            raise FileExistsError(
                f"Run folder {paths.root} already holds a run ({shown}). Pass --resume to continue it, "
                "or choose another name (--set name=...) or output_dir."
            )
    elif paths.config.is_file():
        check_resume_config(config, paths.config)


def check_resume_config(config: RunConfig, saved_path: Path) -> dict[str, tuple[Any, Any]]:
    """The keys that differ from the saved config.yaml, all safe to change on resume (see the module docstring);
    a key that changes what is trained is a ConfigError naming it."""
    try:
        saved = load_config(saved_path)
    except ConfigError as exc:
        raise ConfigError(f"--resume: the run's saved config cannot be read, so the run cannot be continued: {exc}") from None
    changed = config_changes(saved, config)
    unsafe = {k: v for k, v in changed.items() if k not in SAFE_ON_RESUME}
    if unsafe:
        lines = "\n".join(f"  {k}: {_show(old)} in config.yaml, now {_show(new)}" for k, (old, new) in unsafe.items())
        raise ConfigError(
            f"--resume: the config differs from the run's {saved_path} in keys that change what is trained:\n{lines}\n"
            "Resume with the saved values (config.yaml holds them), or start a new run (--set name=...). "
            f"Keys that may change on resume: {', '.join(SAFE_ON_RESUME)}; every other key changes what is trained."
        )
    return changed


def config_changes(saved: RunConfig, config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, new value)} for every key that differs; data paths compared as absolute paths."""
    before, after = _flat(_comparable(saved)), _flat(_comparable(config))
    return {k: (before.get(k, _ABSENT), after.get(k, _ABSENT)) for k in sorted(before.keys() | after.keys())
            if before.get(k, _ABSENT) != after.get(k, _ABSENT)}


def _show(value: Any) -> str:
    return "not set" if value is _ABSENT else repr(value)


def _comparable(config: RunConfig) -> dict[str, Any]:
    raw = config.to_dict()
    data = raw["data"]  # as save_config writes them
    if data["path"]:
        data["path"] = str(Path(data["path"]).resolve())
    data["files"] = {split: {lang: str(Path(f).resolve()) if isinstance(f, str) else f for lang, f in by.items()}
                     for split, by in data["files"].items()}
    return raw


def _flat(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):  # an empty mapping holds no key
            flat.update(_flat(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def open_run_folder(run: Run, resume: bool) -> None:
    """On the main process, before training: undo what a killed write left (stale `.*.tmp` and `.*.old-*`
    siblings of checkpoints, packages and files) and write config.yaml, unless a resumed run has one already."""
    paths = run.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    for folder in (paths.root, paths.checkpoints, paths.adapters):
        for line in recover_stale(folder):
            run.console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
    if resume and paths.config.is_file():
        for key, (old, new) in check_resume_config(run.config, paths.config).items():
            run.console.print(escape(f"--resume: {key} {_show(old)} -> {_show(new)}, safe to change: "
                                     f"{SAFE_ON_RESUME[key]}; config.yaml keeps the saved value"), soft_wrap=True)
    else:
        save_config(run.config, paths.config)


def resume_from_checkpoint(run: Run, optimizer: Any, scheduler: Any) -> int:
    """Restore the newest usable checkpoint (each unusable newer one is reported and set aside as
    checkpoints/unusable-step-N); returns its count of evaluations without improvement (early stopping)."""
    acc, paths = run.accelerator, run.paths

    def warn(message: str) -> None:
        if acc.is_main_process:
            run.console.print(f"[yellow]--resume:[/] {escape(message)}", soft_wrap=True)

    checkpoint, files, unusable = usable_checkpoint(paths.checkpoints, warn)
    if checkpoint is None:
        warn(f"no complete checkpoint in {paths.checkpoints}; starting from step 0")
        return 0
    state = load_checkpoint(run, checkpoint, optimizer, scheduler, files)
    run.history = read_metrics_log(paths.metrics, up_to_step=run.step)
    acc.wait_for_everyone()  # every process has read its checkpoint before the unusable ones move
    if acc.is_main_process:
        for path in unusable:
            warn(f"moved the unusable {path.name} to {set_aside(path)}")
        run.console.print(escape(f"Resumed from {checkpoint} (step {run.step})"), soft_wrap=True)
    return int(state.get("bad_evals", 0))
