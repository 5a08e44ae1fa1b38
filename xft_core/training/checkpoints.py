"""Checkpoints: trainable weights, optimizer, scheduler, sampler, data positions and every RNG.

A checkpoint folder is written atomically and marked COMPLETE last; `--resume` takes the newest complete one,
so a crash mid-write leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from xft_core.util.files import atomic_folder, atomic_write_json


def _trainable_state(run: Any) -> dict[str, Any]:
    model = run.accelerator.unwrap_model(run.model)
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run: Any, optimizer: Any, scheduler: Any, extra: Mapping[str, Any]) -> Path:
    """Trainable weights, optimizer, scheduler, sampler, data positions and every RNG; complete or absent."""
    import torch
    from safetensors.torch import save_file

    target = run.paths.checkpoints / f"step-{run.step}"
    if not run.accelerator.is_main_process:
        return target
    with atomic_folder(target) as tmp:
        save_file(_trainable_state(run), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = state
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {
            "step": run.step,
            "scheduler": scheduler.state_dict(),
            "sampler": run.sampler.state_dict(),
            "streams": {k: s.state_dict() for k, s in run.streams.items()},
            "python_random": _jsonable(random.getstate()),
            "numpy_random": _jsonable(np.random.get_state()),
            "best": run.best,
            **extra,
        }
        atomic_write_json(tmp / "state.json", state)
        (tmp / "COMPLETE").write_text("ok\n")
    _prune_checkpoints(run)
    return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _unjson_numpy(state: list) -> tuple:
    kind, keys, pos, has_gauss, cached = state
    return (kind, np.array(keys["__ndarray__"], dtype=keys["dtype"]), pos, has_gauss, cached)


def _prune_checkpoints(run: Any) -> None:
    keep = run.config.training.keep_checkpoints
    protected = {run.best.get("checkpoint")}
    complete = sorted(complete_checkpoints(run.paths.checkpoints), key=_step_of)
    for old in complete[:-keep] if keep > 0 else []:
        if str(old) not in protected:
            shutil.rmtree(old, ignore_errors=True)


def _step_of(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def complete_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith("step-") and (p / "COMPLETE").is_file()]


def latest_checkpoint(folder: Path) -> Path | None:
    found = complete_checkpoints(folder)
    return max(found, key=_step_of) if found else None


def restore_trainable(run: Any, path: Path) -> None:
    """Copy a checkpoint's trainable weights into the run's model (resume, and best-checkpoint selection)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(run.accelerator.unwrap_model(run.model).named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise RuntimeError(f"{path}: checkpoint does not match this run's trainable parameters (missing {missing[0]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def average_checkpoints(run: Any, count: int) -> list[int]:
    """Copy the mean of the trainable weights of the newest `count` complete checkpoints into the run's model;
    returns their steps (Schmidt, Vulić & Glavaš 2023: averaging a run's snapshots transfers more robustly)."""
    import torch
    from safetensors.torch import load_file

    newest = sorted(complete_checkpoints(run.paths.checkpoints), key=_step_of)[-count:]
    total: dict[str, Any] = {}
    for path in newest:
        for name, tensor in load_file(str(path / "trainable.safetensors")).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    params = dict(run.accelerator.unwrap_model(run.model).named_parameters())
    with torch.no_grad():
        for name, value in total.items():
            params[name].copy_(value / len(newest))
    return [_step_of(path) for path in newest]


def load_checkpoint(run: Any, path: Path, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    restore_trainable(run, path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["sampler"])
    for language, stream_state in state["streams"].items():
        run.streams[language].load_state_dict(stream_state)
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[k] for k in sorted(rng) if k.startswith("cuda")])
    py = state["python_random"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_unjson_numpy(state["numpy_random"]))
    run.step = int(state["step"])
    run.best = state.get("best", {})
    return state
