"""One process per run folder (issue 20): two `xft train` on one folder used to both exit 0 with interleaved
metrics and each other's checkpoints. Now the second exits 2 naming the holder (pid, host, start time), and a
lock left by a SIGKILLed run is taken over with a warning. `xft bench transfer --out` and `xft export --out`
hold their folders the same way. No timing assumptions: the holder is paused mid-checkpoint by the test-only
hook the kill test uses, and the test polls for the file it writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings

import pytest
import yaml
from test_resume_kill import kill, launch, paused_write, wait_for

from conftest import tiny_config, write_sentiment_data
from xft_core.cli.main import main
from xft_core.util.lock import FolderLocked, StaleLockWarning, hold_folder, lock_paths


def test_second_holder_of_a_folder_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from xft_core.util.lock import hold_folder\n"
        f"with hold_folder({str(folder)!r}, 'xft train'):\n"
        "    print('held', flush=True); sys.stdin.readline()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLocked) as info:
            with hold_folder(folder, "xft train"):
                pytest.fail("two processes held one folder")
        message = str(info.value)
        assert str(folder) in message and f"pid {holder.pid}" in message and socket.gethostname() in message
        assert "started 20" in message and "(xft train)" in message
    finally:
        holder.communicate("\n", timeout=60)
    with hold_folder(folder, "xft train"):  # released: free again, and no warning (it ended cleanly)
        pass
    assert not lock_paths(folder)[1].exists()


def test_stale_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from xft_core.util.lock import hold_folder\n"
        f"with hold_folder({str(folder)!r}, 'xft train'):\n"
        "    print('held', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with pytest.warns(StaleLockWarning, match=rf"taking over the lock of pid {holder.pid} on host"):
        with hold_folder(folder, "xft train"):
            assert json.loads(lock_paths(folder)[1].read_text())["pid"] == os.getpid()


def test_only_the_main_process_of_a_distributed_launch_takes_the_lock(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    with hold_folder(folder, "xft train"):
        monkeypatch.setenv("RANK", "1")
        with hold_folder(folder, "xft train"):  # another rank of the same launch: no lock of its own
            pass


def test_two_xft_train_on_one_folder_one_runs_the_other_exits_2_then_a_killed_one_is_taken_over(tiny_model, tmp_path,
                                                                                                    capsys):
    """The issue's case: the same config twice on one run folder. The first (a real process) is held half-way
    through writing its checkpoint of step 2; the second exits 2 naming it. After a SIGKILL, `--resume` takes the
    stale lock over with a warning and finishes with each step logged once."""
    data = write_sentiment_data(tmp_path / "data", vocabulary=2)
    config = tiny_config(tiny_model("bert"), data, tmp_path / "runs", training={"max_steps": 4, "save_every": 2})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run, checkpoints = tmp_path / "runs" / "tiny", tmp_path / "runs" / "tiny" / "checkpoints"

    first = launch(path, tmp_path / "first.log", pause=2)
    wait_for(lambda: bool(paused_write(checkpoints, 2)), first, tmp_path / "first.log", "a paused write of step-2")
    assert main(["train", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"is in use by another process: pid {first.pid} on host {socket.gethostname()}" in err, err
    assert "(xft train)" in err and "Traceback" not in err
    kill(first)

    assert main(["train", str(path), "--no-progress", "--resume"]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap the warning at the console's width
    assert f"warning: {run}: taking over the lock of pid {first.pid}" in err, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line) and "split" not in json.loads(line)]
    assert sorted(steps) == sorted(set(steps)) == [1, 2, 3, 4], steps


def test_bench_and_export_refuse_a_folder_another_process_holds(tmp_path, capsys):
    out = tmp_path / "bench"
    with warnings.catch_warnings(), hold_folder(out, "xft bench transfer"):
        for argv in (["bench", "transfer", "--quick", "--out", str(out)],
                     ["export", str(tmp_path / "no-run"), "--to", "merged", "--out", str(out)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"{out} is in use by another process: pid {os.getpid()}" in err and "(xft bench transfer)" in err
