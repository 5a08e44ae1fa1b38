"""SIGKILL a real `python -m xft_core train` mid-run and again mid-checkpoint-write: `--resume` ends with the
weights of an uninterrupted run. No timing assumptions: the test polls for files the run writes, and the
checkpoint write is held half-way by the test-only hook XFT_TEST_PAUSE_IN_CHECKPOINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import tiny_config, write_sentiment_data

PAUSE = "XFT_TEST_PAUSE_IN_CHECKPOINT"
TIMEOUT = 240  # seconds per wait; a run of this size takes a few seconds


def launch(config: Path, log: Path, *args: str, pause: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop(PAUSE, None)
    if pause is not None:
        env[PAUSE] = str(pause)
    with log.open("w") as handle:  # a file, not a pipe: a full pipe would block the run
        return subprocess.Popen([sys.executable, "-m", "xft_core", "train", str(config), "--no-progress", *args],
                                env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after {TIMEOUT} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=TIMEOUT) == -signal.SIGKILL


def finish(process: subprocess.Popen, log: Path) -> None:
    try:
        code = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert code == 0, log.read_text()[-3000:]


def logged_steps(run: Path) -> int:
    """The last training step in metrics.jsonl (a line being written may be cut short)."""
    import json

    last = 0
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            last = max(last, int(json.loads(line).get("step", 0)))
        except ValueError:
            pass
    return last


def paused_write(checkpoints: Path, step: int) -> list[Path]:
    return list(checkpoints.glob(f".step-{step}.*.tmp/PAUSED")) if checkpoints.is_dir() else []


def test_sigkill_mid_run_and_mid_checkpoint_write_then_resume_matches_an_uninterrupted_run(tiny_model, tmp_path):
    import yaml
    from safetensors.torch import load_file

    data = write_sentiment_data(tmp_path / "data", vocabulary=2)

    def config_file(out: Path) -> Path:
        config = tiny_config(tiny_model("bert"), data, out, sampler="temperature",
                             training={"max_steps": 10, "save_every": 2, "group_by_length": True})
        config["strategy_options"] = {"r": 4, "alpha": 8, "dropout": 0.1}  # dropout: the RNG state must come back
        out.mkdir()
        (out / "run.yaml").write_text(yaml.safe_dump(config))
        return out / "run.yaml"

    reference = launch(config_file(tmp_path / "a"), tmp_path / "a.log")
    config = config_file(tmp_path / "b")
    run, checkpoints = tmp_path / "b" / "tiny", tmp_path / "b" / "tiny" / "checkpoints"

    # 1. killed mid-run: after step 5, before the checkpoint of step 8 is complete (its write waits for the kill)
    first = launch(config, tmp_path / "b1.log", pause=8)
    wait_for(lambda: logged_steps(run) >= 5, first, tmp_path / "b1.log", "step 5")
    kill(first)
    assert not (checkpoints / "step-8").exists()

    # 2. resumed, then killed in the middle of writing the checkpoint of step 8
    second = launch(config, tmp_path / "b2.log", "--resume", pause=8)
    wait_for(lambda: bool(paused_write(checkpoints, 8)), second, tmp_path / "b2.log", "a paused write of step-8")
    kill(second)
    orphan = paused_write(checkpoints, 8)[0].parent
    assert (orphan / "trainable.safetensors").is_file() and not (orphan / "COMPLETE").exists()
    assert not (checkpoints / "step-8").exists()

    # 3. resumed to the end: from step 6, the half-written folder cleaned up
    third = launch(config, tmp_path / "b3.log", "--resume")
    finish(third, tmp_path / "b3.log")
    finish(reference, tmp_path / "a.log")
    log = (tmp_path / "b3.log").read_text()
    assert "step 6" in log and orphan.name in log, log[-3000:]
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".")]

    expected = load_file(str(tmp_path / "a" / "tiny" / "adapters" / "multilingual" / "adapter_model.safetensors"))
    resumed = load_file(str(run / "adapters" / "multilingual" / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    worst = max(float((expected[k] - resumed[k]).abs().max()) for k in expected)
    assert worst < 1e-6, worst
