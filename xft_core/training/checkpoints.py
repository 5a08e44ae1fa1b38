"""Checkpoints: trainable weights, optimizer, scheduler, sampler, data positions and every RNG.

A checkpoint folder is written atomically and marked COMPLETE last; `--resume` reads every file of the newest
complete one and falls back to the previous one when a file is unreadable, so neither a crash mid-write nor a
damaged file ends a run that an older checkpoint can continue.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from xft_core.training.sharding import load_optimizer_state, load_trainable, optimizer_state, trainable_state
from xft_core.util.errors import UserError
from xft_core.util.files import atomic_folder, atomic_write_json

STATE_KEYS = ("step", "scheduler", "sampler", "streams", "python_random", "numpy_random")
# Tests only: the checkpoint of this step stops half-way through its write (see _pause_for_tests)
PAUSE_ENV = "XFT_TEST_PAUSE_IN_CHECKPOINT"


class CheckpointError(FileNotFoundError):
    """No usable checkpoint where one was asked for (a FileNotFoundError: the CLI reports it without a traceback)."""


def save_checkpoint(run: Any, optimizer: Any, scheduler: Any, extra: Mapping[str, Any]) -> Path:
    """Trainable weights, optimizer, scheduler, sampler, data positions and every RNG; complete or absent. Called
    on every process: where the model is sharded (FSDP2) they gather the whole tensors together; the main process
    writes."""
    import torch
    from safetensors.torch import save_file

    target = run.paths.checkpoints / f"step-{run.step}"
    model, main = run.accelerator.unwrap_model(run.model), run.accelerator.is_main_process
    weights, optimizer_state_dict = trainable_state(model, main), optimizer_state(model, optimizer, main)
    if not main:
        return target
    with atomic_folder(target) as tmp:
        with _writing(target / "trainable.safetensors"):
            save_file(weights, str(tmp / "trainable.safetensors"))
        _pause_for_tests(tmp, run.step)
        with _writing(target / "optimizer.pt"):
            torch.save(optimizer_state_dict, tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = state
        with _writing(target / "rng.safetensors"):
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
        with _writing(target / "state.json"):
            atomic_write_json(tmp / "state.json", state)
        (tmp / "COMPLETE").write_text("ok\n")
    _prune_checkpoints(run)
    return target


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write of one checkpoint file as an OSError naming the file and why (the disk full, a file-size
    limit), not torch's `[enforce fail at inline_container.cc:672] ... file write failed`, which names neither.
    The half-written folder is removed by `atomic_folder`; the last complete checkpoint stays."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        code, text = getattr(exc, "errno", None), str(exc)
        torch_write = isinstance(exc, RuntimeError) and ("write failed" in text or "enforce fail" in text)
        if not isinstance(exc, OSError) and not torch_write:
            raise
        kept = "the last complete checkpoint is kept"
        free = _free_bytes(path.parent.parent)
        if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or (torch_write and free < 1 << 20):
            raise OSError(f"{path}: no space left on the device while writing this checkpoint file ({free / 2**20:.1f} "
                          f"MiB free); {kept}. Free disk space, or keep fewer checkpoints "
                          "(training.keep_checkpoints)") from exc
        if code == errno.EFBIG or "File too large" in text:
            raise OSError(f"{path}: file too large for this file system or for the file-size limit (ulimit -f) "
                          f"while writing this checkpoint file; {kept}") from exc
        raise OSError(f"{path}: the checkpoint file could not be written ({type(exc).__name__}: "
                      f"{text.splitlines()[0] if text else exc!r}); {kept}") from exc


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62  # unknown: do not claim a full disk


def _pause_for_tests(folder: Path, step: int) -> None:
    """With XFT_TEST_PAUSE_IN_CHECKPOINT=<step> (set only by tests/test_resume_kill.py), the write of that step's
    checkpoint stops after its trainable weights, writes `PAUSED` into the half-written folder and waits until
    that file is removed, so a test can SIGKILL the run at a known point of the write. Unset: nothing happens."""
    if os.environ.get(PAUSE_ENV) != str(step):
        return
    marker = folder / "PAUSED"
    marker.write_text(f"{os.getpid()}\n")
    while marker.exists():
        time.sleep(0.05)


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


def restore_trainable(run: Any, path: Path, weights: Mapping[str, Any] | None = None) -> None:
    """Copy a checkpoint's trainable weights into the run's model (resume, and best-checkpoint selection); every
    process reads the file and keeps its own shard where the model is sharded."""
    from safetensors.torch import load_file

    weights = weights if weights is not None else load_file(str(path / "trainable.safetensors"))
    model = run.accelerator.unwrap_model(run.model)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise UserError(f"{path}: checkpoint does not match this run's trainable parameters (missing {missing[0]})")
    load_trainable(model, weights)


def average_checkpoints(run: Any, count: int) -> list[int]:
    """Copy the mean of the trainable weights of the newest `count` complete checkpoints into the run's model;
    returns their steps (Schmidt, Vulić & Glavaš 2023: averaging a run's snapshots transfers more robustly)."""
    from safetensors.torch import load_file

    newest = sorted(complete_checkpoints(run.paths.checkpoints), key=_step_of)[-count:]
    total: dict[str, Any] = {}
    for path in newest:
        for name, tensor in load_file(str(path / "trainable.safetensors")).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    load_trainable(run.accelerator.unwrap_model(run.model), {name: value / len(newest) for name, value in total.items()})
    return [_step_of(path) for path in newest]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Every file of a checkpoint, read and checked: {"weights", "optimizer", "rng", "state"}.
    A missing, cut-short or malformed file is a CheckpointError naming it."""
    import torch
    from safetensors.torch import load_file

    def read(name: str, how: Callable[[Path], Any]) -> Any:
        try:
            return how(path / name)
        except Exception as exc:  # safetensors, torch and json each fail in their own way on a damaged file
            raise CheckpointError(f"{path / name}: {type(exc).__name__}: {exc}") from exc

    files: dict[str, Any] = {
        "weights": read("trainable.safetensors", lambda p: load_file(str(p))),
        "optimizer": read("optimizer.pt", lambda p: torch.load(p, weights_only=True)),
        "rng": read("rng.safetensors", lambda p: load_file(str(p))),
        "state": read("state.json", lambda p: json.loads(p.read_text(encoding="utf-8"))),
    }
    if not isinstance(files["optimizer"], dict) or not {"state", "param_groups"} <= set(files["optimizer"]):
        raise CheckpointError(f"{path / 'optimizer.pt'}: not an optimizer state")
    state = files["state"]
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path / 'state.json'}: no {', '.join(missing)}")
    if state["step"] != _step_of(path):
        raise CheckpointError(f"{path / 'state.json'}: step {state['step']} in the folder of step {_step_of(path)}")
    return files


def usable_checkpoint(folder: Path, warn: Callable[[str], None]) -> tuple[Path | None, dict[str, Any], list[Path]]:
    """(the newest complete checkpoint whose files all read, its files, the newer ones that did not).

    Each unusable one is reported through `warn`, naming the bad file and the checkpoint tried next; complete
    checkpoints that are all unusable are a CheckpointError naming every bad file (no checkpoint at all is not
    an error: (None, {}, []))."""
    complete = sorted(complete_checkpoints(folder), key=_step_of, reverse=True)
    problems: list[str] = []
    for index, path in enumerate(complete):
        try:
            return path, read_checkpoint(path), complete[:index]
        except CheckpointError as exc:
            problems.append(str(exc))
            following = complete[index + 1] if index + 1 < len(complete) else None
            warn(f"checkpoint {path.name} is unusable ({exc}); "
                 + (f"falling back to {following.name}" if following else "no older checkpoint is left"))
    if problems:
        raise CheckpointError(f"--resume: no usable checkpoint in {folder}:\n  " + "\n  ".join(problems)
                              + "\nStart again without --resume in a fresh run folder (--set name=...).")
    return None, {}, []


def set_aside(path: Path) -> Path:
    """Move an unusable checkpoint out of the way (kept for a look, no longer a `step-N` that pruning, averaging or
    a later resume would take): checkpoints/unusable-step-N."""
    target = path.parent / f"unusable-{path.name}"
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def load_checkpoint(run: Any, path: Path, optimizer: Any, scheduler: Any,
                    files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Restore everything a checkpoint holds into the run, the optimizer and the scheduler; returns its state.json.
    `files`: what `read_checkpoint(path)` returned, when it was read already."""
    import torch

    files = files or read_checkpoint(path)
    restore_trainable(run, path, files["weights"])
    load_optimizer_state(run.accelerator.unwrap_model(run.model), optimizer, files["optimizer"])
    state = files["state"]
    scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["sampler"])
    for language, stream_state in state["streams"].items():
        run.streams[language].load_state_dict(stream_state)
    rng = files["rng"]
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[k] for k in sorted(rng) if k.startswith("cuda")])
    py = state["python_random"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_unjson_numpy(state["numpy_random"]))
    run.step = int(state["step"])
    run.best = state.get("best", {})
    return dict(state)
