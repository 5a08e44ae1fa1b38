"""What every benchmark prints beside its figures: the CPU's bf16/AMX flags, the GPUs, the threads, the precision.

A speed ratio means nothing without its hardware: on a CPU without AVX512_BF16 a bf16 matmul runs ~4x slower than
float32 (emulated), with AMX ~7x faster; `precision: auto` picks differently on each. So each script calls
`print_hardware(precision)` once, and its figures can never be read without the machine they came from.

    from hardware import print_hardware      # benchmarks/ is the script's folder, so it is on sys.path
    print_hardware("bf16")                   # hardware: ... / precision: bf16
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux /proc/cpuinfo; elsewhere the platform's processor string, no flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.machine(), flags


def native_bf16() -> bool:
    """What xft's `precision: auto` decides for this CPU (AVX512_BF16 or AMX: bf16; else float32)."""
    from xft_core.util.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


def gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
            for i in range(torch.cuda.device_count())]


def describe(precision: str | None = None) -> list[str]:
    """The lines `print_hardware` prints: the CPU and its flags, torch and its threads, the GPUs, the precision."""
    import torch

    model, flags = cpu_model_and_flags()
    marks = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS) if flags else "flags unknown"
    lines = [f"hardware: CPU {model}, {os.cpu_count()} cores; {marks}; native bf16 for xft: "
             f"{'yes' if native_bf16() else 'no (bf16 emulated, slower than float32)'}",
             f"hardware: torch {torch.__version__}, {torch.get_num_threads()} threads, kernels "
             f"{torch.backends.cpu.get_cpu_capability()}; GPU: {'; '.join(gpus()) or 'none'}"]
    if precision is not None:
        lines.append(f"precision: {describe_precision(precision)}")
    return lines


def describe_precision(precision: str) -> str:
    """'bf16' -> 'bf16 (autocast, frozen base in bfloat16)'; 'no'/'fp32' -> 'float32'."""
    return {"bf16": "bf16 (autocast; frozen base weights in bfloat16)", "fp16": "fp16 (autocast; frozen base in float16)",
            "no": "float32", "fp32": "float32", "float32": "float32"}.get(precision, precision)


def print_hardware(precision: str | None = None) -> None:
    for line in describe(precision):
        print(line, flush=True)


def auto_precision(device: str | None = None) -> str:
    """What `training.precision: auto` resolves to here ('bf16', 'fp16' or 'no')."""
    from xft_core.util.precision import resolve_precision

    return resolve_precision("auto", device)
