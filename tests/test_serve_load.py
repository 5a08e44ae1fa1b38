"""benchmarks/serve_load.py in a short mode: a real `xft serve` process on loopback under a few seconds of load from a
few clients, capacity 2 (so adapters are evicted and reloaded all along), adapters replaced and deleted, one corrupt
upload, then a SIGTERM with requests in flight. Pass/fail, never timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "serve_load.py"

# admin_plan's changes, in order, and the status each must get
EXPECTED_CHANGES = [("PUT de", 200), ("PUT es", 400), ("DELETE zh", 200), ("DELETE en", 409), ("PUT zh", 200),
                    ("PUT de", 200), ("PUT de", 200)]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("serve-load")
    out = work / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "4", "--clients", "4", "--capacity", "2",
                           "--steps", "4", "--sigterm-rows", "96", "--work", str(work / "work"), "--json", str(out)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert out.is_file(), f"no report (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    result = json.loads(out.read_text())
    result["exit_status"], result["stdout"] = done.returncode, done.stdout
    return result


def test_every_answer_is_the_one_its_adapter_version_computes(report):
    assert report["requests"] > 0 and report["rows"] >= report["requests"]
    assert report["wrong"] == []
    assert len(report["hashes"]) >= 4  # each language's adapter answered at least once


def test_no_valid_request_gets_a_5xx_or_no_answer(report):
    assert report["server_errors"] == []


def test_adapter_changes_get_their_statuses(report):
    assert [(a["operation"], a["got"]) for a in report["admin"]] == EXPECTED_CHANGES
    assert all(a["wanted"] == a["got"] for a in report["admin"])  # wanted -400: the refusal did not name the file
    corrupt = report["admin"][1]
    assert "adapter_model.safetensors" in corrupt["detail"]


def test_capacity_two_evicts_under_load(report):
    assert report["capacity"] == 2
    assert report["server_stats"]["router"]["evictions"] > 0


def test_every_request_in_flight_at_sigterm_is_answered(report):
    sigterm = report["sigterm"]
    assert sigterm["outcomes"] == {"200": sigterm["requests"]}  # complete and correct, none cut or refused
    assert sigterm["in_flight"] > 0  # the signal came while requests were still being served
    assert sigterm["exit"] in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_the_script_passes_and_prints_its_summary(report):
    assert report["ok"] is True
    assert report["exit_status"] == 0, report["stdout"][-3000:]
    assert "wrong answers 0, 5xx 0, adapter changes 7/7 as expected" in report["stdout"]
