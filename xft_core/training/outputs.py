"""What a finished run leaves: adapter packages with their manifests, and the run summary `run.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.adapters import base_fingerprint, save_package
from xft_core.models.quantize import FLOAT_DTYPES
from xft_core.training.run import Run
from xft_core.training.sharding import is_sharded
from xft_core.version import __version__


def manifest_for(run: Run, adapter: str | None, languages: list[str]) -> dict[str, Any]:
    """`xft.json` of one package: base model and fingerprint, task and labels, languages, strategy, metrics."""
    return {
        "xft_version": __version__,
        "format": 1,
        "base_model": run.config.model,
        "base_fingerprint": base_fingerprint(run.model_path),
        "task": run.config.task,
        "task_options": dict(run.config.task_options),
        **run.head.label_info(),
        "languages": languages,
        "adapter_name": adapter or run.adapter_names[0],
        "strategy": run.config.strategy,
        "strategy_options": dict(run.config.strategy_options),
        **({"init_from": run.init_from} if run.init_from else {}),
        "precision": run.config.training.precision,  # what eval, predict and serve default to (trained_precision)
        # a quantized base (nf4) is part of what the adapter was trained on: loading the base quantizes it the same way
        **({"base_dtype": run.config.training.base_dtype} if run.config.training.base_dtype not in FLOAT_DTYPES else {}),
        "few_shot": {"k": run.config.data.few_shot, "languages": run.few_shot_languages} if run.few_shot_languages else {},
        "averaged_checkpoints": run.averaged_steps,
        "metrics": {lang: run.metrics[lang] for lang in languages if lang in run.metrics},
        "dev_metrics_all": run.metrics if not run.per_language else {},
        "run": run.config.name,
        "step": run.step,
    }


def save_adapters(run: Run) -> dict[str, Path]:
    """One package per language adapter (per_language) or one for the single set of weights."""
    model = run.unwrapped_model()
    if run.per_language:
        targets: list[tuple[str, str | None, list[str]]] = [(lang, lang, [lang]) for lang in run.adapter_names]
    else:
        targets = [(run.adapter_names[0], None, run.train_languages)]
    for name, adapter, languages in targets:
        folder = run.paths.adapters / name
        save_package(folder, model=model, strategy=run.strategy, adapter=adapter, head=run.head,
                     manifest=manifest_for(run, adapter, languages))
        run.adapter_dirs[name] = folder
    return run.adapter_dirs


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "name": run.config.name,
        "steps": run.step,
        "wall_seconds": round(run.wall_seconds, 2),
        "examples_per_second": round(run.examples_per_second, 2),
        "padding_share": round(run.padding_share, 4),
        "trainable_parameters": run.trainable_parameters,
        "train_languages": run.train_languages,
        **({"init_from": run.init_from} if run.init_from else {}),
        "few_shot": {"k": run.config.data.few_shot, "languages": run.few_shot_languages} if run.few_shot_languages else {},
        "averaged_checkpoints": run.averaged_steps,
        "examples_drawn": dict(run.sampler.counts),
        "dev_metrics": run.metrics,
        "best": {k: v for k, v in run.best.items() if k != "metrics"},
        "adapters": {k: str(v) for k, v in run.adapter_dirs.items()},
        "model_path": str(run.model_path),
        "precision": run.accelerator.mixed_precision,
        "device": str(run.accelerator.device),
        "num_processes": run.accelerator.num_processes,
        "sharding": "fsdp2" if is_sharded(run.unwrapped_model()) else "none",  # fsdp2: parameters sharded across processes
        "xft_version": __version__,
    }
