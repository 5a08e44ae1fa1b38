"""What several benchmark scripts share: the SIB-200 prompts of the probes, their options, loading the model they
run, and the lines that say what machine a figure comes from (CPU flags, native bf16, threads, torch, GPUs) and
in which precision: every benchmark prints them beside its figures (`print_hardware`), since a speed ratio means
nothing without them (a bf16 matmul runs ~4x slower than float32 on a CPU without AVX512_BF16, ~7x faster with AMX).

Scripts in this folder import it as `common` (python puts the script's folder on the path).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"
LANGUAGES = ("eng", "deu", "zho", "hin")
TOPICS = ("science", "travel", "politics", "sports", "health", "entertainment", "geography")
CPU_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def prompts(per_language: int) -> list[str]:
    texts = []
    for language in LANGUAGES:
        lines = (SIB / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] + "\nTopic:" for line in lines[:per_language]]
    return texts


def probe_parser(doc: str | None, per_language: int, batch_size: int) -> argparse.ArgumentParser:
    """The options every probe on the SIB-200 prompts takes (int8_probe.py, compile_probe.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="base model (default: the embedded Gemma 3 270M)")
    parser.add_argument("--quick", action="store_true", help="a tiny random Gemma 3, a few prompts per language (CI)")
    parser.add_argument("--per-language", type=int, default=per_language,
                        help=f"prompts per language (default {per_language})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"prompts per forward (default {batch_size})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser


def load_lm(args: argparse.Namespace) -> tuple[Path, Any, Any]:
    """(folder, tokenizer padding on the left, frozen fp32 causal LM): the tiny random Gemma 3 with --quick, else
    --model; torch set to --threads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import quiet_transformers, resolve_model
    from xft_core.testing import tiny_model_cache

    quiet_transformers()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="xft-probe-") as scratch:
        folder = tiny_model_cache("gemma3", scratch) if args.quick else resolve_model(args.model, get_plugin_manager())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval().requires_grad_(False)
    tokenizer.padding_side = "left"
    return Path(folder), tokenizer, model


def cpu_flags() -> dict[str, bool]:
    """The CPU features that decide xft's speed on a CPU (from /proc/cpuinfo; all False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    present = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {flag: flag in present for flag in CPU_FLAGS}


def machine_line() -> str:
    """One line naming what a benchmark's figures depend on: CPU flags, xft's native-bf16 verdict, threads, torch."""
    import torch

    from xft_core.util.precision import cpu_has_native_bf16

    flags = " ".join(f"{name}{'+' if on else '-'}" for name, on in cpu_flags().items())
    return (f"machine: {flags}; native bf16 (xft's precision auto): {'yes' if cpu_has_native_bf16() else 'no'}; "
            f"{torch.get_num_threads()} thread(s); torch {torch.__version__}")


def cpu_model() -> str:
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())


def gpu_line() -> str:
    """The GPUs torch sees (name and memory), or none; the CPU's model name beside them."""
    import os

    import torch

    gpus = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return f"GPU: {'; '.join(gpus) or 'none'}; CPU: {cpu_model()}, {os.cpu_count()} cores"


def describe(precision: str | None = None) -> list[str]:
    """The lines `print_hardware` prints."""
    lines = [machine_line(), gpu_line()]
    if precision is not None:
        named = {"no": "float32 (no mixed precision)", "fp32": "float32", "bf16": "bf16 (autocast; frozen base in bfloat16)",
                 "fp16": "fp16 (autocast; frozen base in float16)"}
        lines.append(f"precision: {named.get(precision, precision)}")
    return lines


def print_hardware(precision: str | None = None) -> None:
    """The machine (CPU flags, native bf16, threads, torch), the GPUs, and the precision the figures below are in."""
    for line in describe(precision):
        print(line, flush=True)


def auto_precision(device: str | None = None) -> str:
    """What `training.precision: auto` resolves to on `device` (default: the best one present): bf16, fp16 or no."""
    from xft_core.util.precision import resolve_precision

    return resolve_precision("auto", device)


# ------------------------------------------------------------------------------- one variant in a process of its own
RESULT = "RESULT "


def emit_result(result: dict[str, Any]) -> None:
    """A child's answer to `run_child`: one line on stdout."""
    print(RESULT + json.dumps(result), flush=True)


def run_child(command: list[str], threads: int = 0) -> tuple[dict[str, Any] | None, Any]:
    """Run a benchmark child (a variant in a process of its own, so its peak RSS is its own) with `threads` threads
    (0: torch's default); (its `emit_result`, parsed, or None when it failed or printed none; the finished process)."""
    import os
    import subprocess

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT)), None)
    if done.returncode or line is None:
        return None, done
    return json.loads(line[len(RESULT):]), done
