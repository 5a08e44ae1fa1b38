"""Numeric precision in one place: what `auto` means on this machine, and the autocast context for forwards.

Training, evaluation and the router all run forwards through `autocast`, so a score computed in one of them
is the score the others compute."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Mapping

from xft_core.util.errors import UserError


def resolve_precision(setting: str, device: Any = None) -> str:
    """'auto' is bf16 on CPUs with native bf16 dot products and on GPUs that support it (fp16 on older GPUs),
    else 'no' (full precision)."""
    if setting != "auto":
        return setting
    import torch

    kind = device_type(device)
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if kind != "cpu":
        return "no"
    return "bf16" if cpu_has_native_bf16() else "no"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: there a bf16 matmul runs several times faster than fp32. Without them oneDNN emulates
    bf16 and runs it about 4 times SLOWER than fp32 (measured on an AVX-512 Xeon without AVX512_BF16), so
    autocast would cost speed, not save it. (oneDNN's own `_is_mkldnn_bf16_supported` says yes on any AVX-512.)"""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(bool(check()) for check in checks if check is not None)
    try:  # older torch: oneDNN's answer is the best there is
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def device_type(device: Any = None) -> str:
    """'cuda', 'cpu', 'mps', ... for a device, a device string, or None (the best device present)."""
    if device is None:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(getattr(device, "type", device)).split(":")[0]


def autocast(precision: str, device: Any = None) -> ContextManager[Any]:
    """Forwards in bf16/fp16 autocast, or a no-op for full precision ('no', 'fp32')."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type(device), dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def adapter_scales(scale: float | Mapping[str, float] | None) -> dict[str, float]:
    """Adapter scales as {language or "*": factor}, each in [0, 1] (0: the base model, 1: the adapter as trained)."""
    if scale is None:
        return {}
    scales = {"*": float(scale)} if isinstance(scale, (int, float)) else {str(k): float(v) for k, v in scale.items()}
    bad = {k: v for k, v in scales.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise UserError(f"adapter scale must be between 0 (the base model) and 1 (the adapter as trained): {bad}")
    return scales


def scale_for(scales: Mapping[str, float], language: str | None) -> float:
    """The scale for rows of `language`: its own, else the "*" default, else 1."""
    if language is not None and language in scales:
        return scales[language]
    return scales.get("*", 1.0)
