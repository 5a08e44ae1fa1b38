"""The benchmarks' quick modes still run and still print their tables: each script in a subprocess (cwd a scratch
folder, one thread), exit status 0, and every key line present with a finite, positive number. Timing ratios are
never asserted: they belong to the full runs on a quiet machine. The whole file takes about 2.5 minutes on one core."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SIB = ROOT.parent / "shared" / "data" / "sib200"
NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


def run(tmp_path: Path, script: str, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def numbers(stdout: str, pattern: str) -> list[float]:
    """The numbers of the one line matching `pattern` (NUMBER groups), each checked finite."""
    found = [m for line in stdout.splitlines() if (m := re.search(pattern, line))]
    assert len(found) == 1, f"expected one line matching {pattern!r}, found {len(found)} in:\n{stdout}"
    values = [float(g) for g in found[0].groups()]
    assert all(math.isfinite(v) for v in values), found[0].group(0)
    return values


def hardware(stdout: str) -> str:
    """Every benchmark says what it ran on (common.print_hardware): the CPU's bf16/AMX flags and xft's native-bf16
    verdict, torch's threads, the GPUs, and the precision of its figures; returns the precision line."""
    assert re.search(r"^machine: avx512f[+-] .*avx512_bf16[+-] .*amx_bf16[+-] .*native bf16 \(xft's precision auto\): "
                     r"(yes|no); \d+ thread\(s\); torch ", stdout, re.M), stdout[:2000]
    assert re.search(r"^GPU: .+; CPU: .+, \d+ cores$", stdout, re.M), stdout[:2000]
    [precision] = re.findall(r"^precision: (.+)$", stdout, re.M)
    return precision


def positive(stdout: str, pattern: str) -> list[float]:
    values = numbers(stdout, pattern)
    assert all(v > 0 for v in values), f"{pattern!r}: {values}"
    return values


def test_hotswap_quick(tmp_path):
    out = run(tmp_path, "hotswap.py", "--quick", "--threads", "1")
    hardware(out)
    for label in ("adapter switch: strategy.activate (median)", "for comparison: peft set_adapter (median)",
                  "route to a loaded adapter (median)"):
        positive(out, rf"^{re.escape(label)}\s+{NUMBER} us$")
    positive(out, rf"^cold load from disk \(median\)\s+{NUMBER} ms$")
    for label in ("mixed 4-language request", "single-adapter batch, same texts", "bare base model, same texts",
                  "request by request"):
        positive(out, rf"^{re.escape(label)}.*?\s{NUMBER} rows/s$")
    for label in ("mixed / single-adapter", "mixed / request-by-request", "single-adapter / base"):
        positive(out, rf"^{re.escape(label)}\s+{NUMBER}x")
    assert re.search(r"^\s+(ok  |MISS) adapter switch \(median\) < 1 ms$", out, re.M), out
    # on a CPU the mixed / request-by-request ratio is reported, never judged (a floor for GPUs)
    assert not re.search(r"^\s+(ok  |MISS) mixed batch / request by request", out, re.M), out
    assert re.search(r"^\s+\((ok\)|-\) ) mixed batch / request by request >= 4 \(judged on GPUs only\): "
                     rf"{NUMBER}x, not judged on a CPU$", out, re.M), out


def test_train_throughput_quick(tmp_path):
    out = run(tmp_path, "train_throughput.py", "--quick", "--threads", "1",
              "--variants", "plain", "plain-bf16", "xft", "xft-top6", "full")
    assert "for xft (training.precision auto)" in hardware(out)
    for variant in ("plain", "plain-bf16", "xft", "xft-top6", "full"):
        speed, cpu, padding, rss, f1 = numbers(
            out, rf"^{re.escape(variant)}\s+{NUMBER} ex/s\s+{NUMBER} ex/CPU-s\s+padding\s+{NUMBER}%\s+"
                 rf"peak RSS\s+{NUMBER} MB\s+dev macro-F1\s+{NUMBER}  precision (?:no|bf16|fp16)$")
        assert speed > 0 and cpu > 0 and rss > 0, variant
        assert 0 <= padding < 100 and 0 <= f1 <= 100, variant
    assert re.search(r"^plain-bf16 .* precision bf16$", out, re.M), "the plain bf16 loop runs under bf16 autocast"
    for variant in ("plain-bf16", "xft", "xft-top6", "full"):
        numbers(out, rf"^{re.escape(variant)}/plain: {NUMBER}x examples/s \({NUMBER}x per CPU-second\), "
                     rf"dev macro-F1 {NUMBER} points$")


def test_train_throughput_means_divide_mean_rates_and_average_f1_differences():
    """Over seeds the ratio is mean rate over plain's mean rate (not a mean of ratios), and the F1 change the mean of
    each seed's difference to its own plain run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARKS / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def result(rate: float, f1: float) -> dict:
        return {"examples_per_second": rate, "dev_macro_f1": f1}

    runs = [{"plain": result(2.0, 0.80), "xft": result(8.0, 0.70)}, {"plain": result(6.0, 0.60), "xft": result(8.0, 0.80)}]
    [(variant, ratio, points)] = module.against_plain(runs)
    assert variant == "xft"
    assert ratio == pytest.approx(2.0)  # 8 / 4; the mean of the per-seed ratios would be (4 + 1.33) / 2
    assert points == pytest.approx(5.0)  # (-10 + 20) / 2


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_inference_throughput_quick(tmp_path):
    out = run(tmp_path, "inference_throughput.py", "--quick")
    hardware(out)
    positive(out, rf"^{NUMBER} texts \(")
    positive(out, rf"^\(a\) plain peft loop\s+{NUMBER} rows/s")
    positive(out, rf"^\(b\) xft router\s+{NUMBER} rows/s")
    ratio, agree = numbers(out, rf"^\(b\)/\(a\) {NUMBER}x rows/s; predicted labels agree on {NUMBER}% of the texts$")
    assert ratio > 0 and 0 <= agree <= 100
    tokens, given, padding, ordered, bound = numbers(out, rf"^{NUMBER} tokens; \(a\)'s batches compute {NUMBER} positions "
                                                          rf"\({NUMBER}% padding\), batches of the length-sorted texts "
                                                          rf"{NUMBER}: ordering alone bounds \(b\)/\(a\) at {NUMBER}x$")
    assert 0 < tokens <= ordered <= given and bound >= 1


def test_serve_load_throughput_quick(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    out = run(tmp_path, "serve_load.py", "--throughput", "--quick")
    hardware(out)
    threads = numbers(out, rf"^torch threads {NUMBER}: the server's")
    assert threads == [1.0]
    for clients in (1, 8):
        requests, rows, p50, p99, per_batch, wrong, errors = numbers(
            out, rf"^\s+{clients}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$")
        assert requests > 0 and rows > 0 and 0 < p50 <= p99 and per_batch >= 1, clients
        assert rows == pytest.approx(requests, rel=0.01)  # one row per request: the server does the batching
        assert wrong == 0 and errors == 0, clients  # correctness, not timing
    positive(out, rf"^router batch: {NUMBER} rows/s \({NUMBER} mixed-language rows per predict")
    positive(out, rf"^server rows/s at 8 clients / router rows/s: {NUMBER}\s+(?:ok|MISS)\s+\(floor 0\.8\)$")


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_int8_probe_quick(tmp_path):
    out = run(tmp_path, "int8_probe.py", "--quick")
    hardware(out)
    positive(out, rf"^fp32\s+{NUMBER} rows/s\s+1\.00x")
    for variant in ("w8", "w8a8"):
        speed, ratio, agree, error = numbers(
            out, rf"^{variant}\s+{NUMBER} rows/s\s+{NUMBER}x\s+topic agreement\s+{NUMBER}%\s+score error {NUMBER}$")
        assert speed > 0 and ratio > 0 and 0 <= agree <= 100, variant
        assert 0 < error < 1, f"{variant}: rounding the weights must change the scores a little, not wreck them"


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_compile_probe_quick(tmp_path):
    out = run(tmp_path, "compile_probe.py", "--quick", "--repeat", "1")
    hardware(out)
    positive(out, rf"^eager\s+{NUMBER} rows/s\s+1\.00x")
    speed, ratio, first, difference = numbers(
        out, rf"^compiled\s+{NUMBER} rows/s\s+{NUMBER}x\s+first pass \(compiling\) {NUMBER} s\s+"
             rf"max score difference {NUMBER}$")
    assert speed > 0 and ratio > 0 and first > 0
    assert difference < 1e-3, "the compiled model must compute the same scores"


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_matmul_probe_quick(tmp_path):
    out = run(tmp_path, "matmul_probe.py", "--quick", "--profile", "--per-language", "2", "--batch-size", "4")
    hardware(out)
    positive(out, rf"^128x128 matmul, fp32\s+{NUMBER} GFLOP/s$")
    positive(out, rf"^128x128 matmul, bf16\s+{NUMBER} GFLOP/s\s+{NUMBER}x fp32$")
    if "int8 matmul 64x64x128: not available" not in out:
        positive(out, rf"^64x64x128 matmul, int8\s+{NUMBER} ms\s+{NUMBER}x fp32$")
    for rows in (1, 4):
        wall, per_row, operators, share = positive(
            out, rf"^forward of\s+{rows} row\(s\)\s+wall\s+{NUMBER} ms\s+per row\s+{NUMBER} ms\s+in operators\s+{NUMBER} ms"
                 rf"\s+aten::mm share\s+{NUMBER}%$")
        assert operators <= wall * 1.5 and 0 < share <= 100 and abs(per_row * rows - wall) <= 0.05 * rows + 0.05


def test_threads_probe_quick(tmp_path):
    out = run(tmp_path, "threads_probe.py", "--quick")
    hardware(out)
    [cores] = positive(out, rf"^{NUMBER} cores; a LoRA training step of 4 rows x 8 tokens$")
    n = int(cores)
    positive(out, rf"^one thread\s+{NUMBER} ex/s$")
    positive(out, rf"^{n} threads\s+{NUMBER} ex/s$")
    positive(out, rf"^{n} processes\s+{NUMBER} ex/s  \(one thread each, {max(1, 4 // n)} rows each\)$")
    for label in ("threads / one thread", "processes / threads"):
        positive(out, rf"^{re.escape(label)}\s+{NUMBER}x$")


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_fallback_quick(tmp_path):
    out = run(tmp_path, "fallback.py", "--quick", "--work", str(tmp_path / "work"))
    hardware(out)
    for label in ("English adapter alone", "best other source (ranked on dev)", "merge of the nearest languages' adapters",
                  "ensemble of the nearest languages' adapters", "the language's own adapter (ceiling)"):
        score, _, gain, seeds = numbers(out, rf"^\| {re.escape(label)} \| {NUMBER} ± {NUMBER} \| {NUMBER} \| {NUMBER} \|$")
        assert 0 <= score <= 100 and seeds == 1
    numbers(out, rf"^best fallback: (?:best_source|merge|ensemble) {NUMBER} vs English adapter alone {NUMBER} \({NUMBER}\)$")
    for language in ("deu", "fra", "swh"):
        assert re.search(rf"^\| {language} \|", out, re.M), out


def test_train_profile_quick(tmp_path):
    out = run(tmp_path, "train_profile.py", "--quick")
    hardware(out)
    positive(out, rf"^\S+, sequence-classification, LoRA at full depth: 2 steps of 8 rows \({NUMBER} token positions")
    for variant in ("all on", "peft LoRA", "model RMSNorm", "SDPA attention", "other AdamW", "all off"):
        cpu, wall, ratio, loss = numbers(out, rf"^{re.escape(variant)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x\s+{NUMBER}$")
        assert cpu > 0 and wall > 0 and ratio > 0 and loss > 0, variant
    for variant in ("all on", "all off"):
        profile = out.split(f"top operators, {variant} (")[1].split("\n\n")[0]
        shares = [float(m) for m in re.findall(rf"^  \S.*?{NUMBER}%\s+\d+ calls$", profile, re.M)]
        assert shares and all(0 < s <= 100 for s in shares) and sum(shares) <= 100.5, profile


def test_qlora_memory_quick(tmp_path):
    import importlib.util

    dtypes = ["float32", "bfloat16"] + (["nf4"] if importlib.util.find_spec("bitsandbytes") else [])
    out = run(tmp_path, "qlora_memory.py", "--quick", "--threads", "1", "--dtypes", *dtypes)
    hardware(out)
    rows = {}
    for dtype in dtypes:
        rows[dtype] = numbers(out, rf"^{dtype}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+(?:-|\d+)\s+{NUMBER}\s+{NUMBER}"
                                   rf"\s+{NUMBER}\s+{NUMBER}$")
    # not a timing: the weights' bytes of each dtype, computed from the tensors, must order as the dtypes do
    assert rows["bfloat16"][0] < rows["float32"][0]
    if "nf4" in rows:
        assert rows["nf4"][0] < rows["bfloat16"][0]


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_device_check_quick(tmp_path):
    """The one-call check runs every part (two CPU processes stand in for the GPUs of the DDP part) and prints one
    table; its figures are the part scripts' own, checked here only for being there and finite."""
    out = run(tmp_path, "device_check.py", "--quick", "--json", str(tmp_path / "check.json"), timeout=900)
    hardware(out)
    positive(out, rf"^training\s+plain HF \+ peft loop, bf16 autocast\s+{NUMBER} ex/s\s+dev macro-F1 {NUMBER}$")
    positive(out, rf"^training\s+xft train, precision \w+\s+{NUMBER} ex/s\s+{NUMBER}x the plain loop; dev macro-F1 {NUMBER}$")
    positive(out, rf"^inference\s+xft router, precision \w+\s+{NUMBER} rows/s\s+{NUMBER}x; labels agree {NUMBER}%$")
    positive(out, rf"^hot swap\s+request by request\s+{NUMBER} rows/s\s+mixed is {NUMBER}x \(floor 4x on GPUs; "
                  r"reported only on a CPU\)$")
    for clients in (1, 8):
        requests, p50, p99, wrong = numbers(out, rf"^serve\s+{clients} one-row client\(s\)\s+{NUMBER} req/s\s+p50 {NUMBER} ms, "
                                                 rf"p99 {NUMBER} ms, wrong {NUMBER}$")
        assert requests > 0 and wrong == 0
    for kind, sharded in (("DDP", ""), ("FSDP", r" \(fsdp2\)")):
        rate, ratio, one, gap = numbers(out, rf"^{kind}\s+2 processes{sharded}, same global batch\s+{NUMBER} ex/s\s+"
                                             rf"{NUMBER}x one process \({NUMBER} ex/s\); losses differ by <= {NUMBER}$")
        assert rate > 0 and one > 0 and gap < 0.05, f"{kind}: 2 processes with half the batch each train what one trains"
    assert "FAILED" not in out
    report = json.loads((tmp_path / "check.json").read_text())
    assert set(report["results"]) == {"training", "inference", "hot swap", "serve", "DDP", "FSDP"}


@pytest.mark.skipif(not SIB.is_dir(), reason=f"needs the SIB-200 data in {SIB}")
def test_rescore_quick(tmp_path):
    work = tmp_path / "work"
    out = run(tmp_path, "rescore.py", "--quick", "--work", str(work))
    hardware(out)
    numbers(out, rf"^sib200 / verbalizer / seeds 0: 16 test rows per language .*source language \(raw\) {NUMBER}$")
    methods = ("raw", "batch", "batch-log", "contextual", "domain")
    score, gain, sample, sample_gain = numbers(out, rf"^\| raw \| {NUMBER} \| {NUMBER} \| - \| {NUMBER} \| {NUMBER} \|$")
    assert 0 <= score <= 100 and gain == 0 and sample_gain == 0
    for method in methods[1:]:
        score, gain, low, high, sample, sample_gain = numbers(
            out, rf"^\| {re.escape(method)} \| {NUMBER} \| {NUMBER} \| {NUMBER} \.\. {NUMBER} \| {NUMBER} \| {NUMBER} \|$")
        assert 0 <= score <= 100 and 0 <= sample <= 100 and low <= high
    report = json.loads((work / "rescore-sib200-verbalizer.json").read_text())
    assert report["test_rows"] == 16 and list(report["methods"]) == list(methods)
    raw = report["methods"]["raw"]
    assert len(raw["per_language"]) == 9 and "interval" not in raw
    for method in methods[1:]:
        entry = report["methods"][method]
        assert entry["gain"] == pytest.approx(entry["zero_shot"] - raw["zero_shot"])
        low, high = entry["interval"]
        assert low <= high
    # a second call reuses the kept predictions (no model is loaded: nothing is predicted again)
    again = run(tmp_path, "rescore.py", "--quick", "--work", str(work))
    assert "predicting sib200-verbalizer-s0: " in out and "predicting " not in again
    assert json.loads((work / "rescore-sib200-verbalizer.json").read_text()) == report
    # against itself: the raw runs differ from themselves by nothing, on every resample; each method by its gain
    itself = run(tmp_path, "rescore.py", "--quick", "--work", str(work), "--against", "verbalizer")
    compared = json.loads((work / "rescore-sib200-verbalizer.json").read_text())
    assert compared["against"] == {"recipe": "verbalizer", "zero_shot": raw["zero_shot"]}
    assert compared["methods"]["raw"]["vs_against"] == 0 and compared["methods"]["raw"]["against_interval"] == [0, 0]
    for method in methods[1:]:
        entry = compared["methods"][method]
        assert entry["vs_against"] == pytest.approx(entry["gain"]) and entry["against_interval"] == entry["interval"]
    numbers(itself, rf"^\| raw \| {NUMBER} \| {NUMBER} \| - \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \.\. {NUMBER} \|$")


def test_rescore_macro_f1_is_xfts():
    """The vectorised macro-F1 behind the intervals equals xft's metric on every row of a batch of label vectors."""
    import importlib.util

    import numpy as np

    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("rescore", BENCHMARKS / "rescore.py")
        rescore = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(rescore)
    finally:
        sys.path.remove(str(BENCHMARKS))
    from xft_metrics import macro_f1

    rng = np.random.default_rng(1)
    pred, gold = rng.integers(0, 4, size=(2, 5, 30)), rng.integers(0, 4, size=(2, 5, 30))
    pred[0, 0] = 2  # one row predicts a single class; another lacks a class entirely
    gold[1, 1] = np.where(gold[1, 1] == 3, 0, gold[1, 1])
    got = rescore.macro_f1(pred, gold, 4)
    for i in range(2):
        for j in range(5):
            assert got[i, j] == pytest.approx(macro_f1(list(pred[i, j]), list(gold[i, j])))
