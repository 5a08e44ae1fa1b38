"""`xft doctor`: what this machine gives xft. The torch build and devices, bf16 support and what `precision: auto`
picks, threads, installed plugins, the Accelerate config a launch would use, package versions, the model cache.

Everything is read, nothing is loaded or converted: it answers in a few seconds, on a machine without a GPU too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from xft_core.hooks import CommandSpec, hookimpl
from xft_core.util.console import console

PACKAGES = ("transformers", "peft", "accelerate", "safetensors", "pluggy")


@hookimpl
def xft_commands():
    yield CommandSpec(name="doctor", register=register,
                      description="torch build, devices, bf16, threads, plugins, accelerate config, model cache")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="what this machine gives xft: devices, bf16, plugins, accelerate config",
                              description="Report the torch build, devices, bf16 support and what `precision: auto` picks, "
                                          "threads, installed plugins, the Accelerate config in use, package versions "
                                          "and the model cache.")
    p.add_argument("--json", action="store_true", help="print the report as JSON (for scripts and bug reports)")
    p.add_argument("--accelerate-config", metavar="FILE",
                   help="check this Accelerate config file instead of the default one (`accelerate config` writes that)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    report = collect_report(args.accelerate_config)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_report(report)
    return 0


# ------------------------------------------------------------------------------------------------ the facts
def collect_report(accelerate_config: str | None = None) -> dict[str, Any]:
    from xft_core.version import __version__

    return {
        "xft": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch_build(),
        "devices": devices(),
        "precision": precision(),
        "threads": threads(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "plugins": plugins(),
        "blocked_plugins": blocked_plugins(),
        "accelerate_config": accelerate_config_report(accelerate_config),
        "model_cache": model_cache(),
    }


def torch_build() -> dict[str, Any]:
    import torch

    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    build = f"CUDA {cuda}" if cuda else f"ROCm {hip}" if hip else "CPU only"
    return {"version": torch.__version__, "build": build, "cuda": cuda, "hip": hip,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "cpu_capability": _call(lambda: torch.backends.cpu.get_cpu_capability())}


def devices() -> dict[str, Any]:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}", "bf16": props.major >= 8})
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    xpus = [xpu.get_device_name(i) for i in range(xpu.device_count())] if xpu is not None and xpu.is_available() else []
    return {"cpu_cores": os.cpu_count(), "cuda": gpus, "mps": bool(mps and mps.is_available()), "xpu": xpus}


def best_device() -> str:
    """The device xft trains on without `training.cpu`: what Accelerate picks (prepare.has_accelerator)."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    if torch.cuda.is_available():
        return "cuda"
    if xpu is not None and xpu.is_available():
        return "xpu"
    return "mps" if mps and mps.is_available() else "cpu"


def precision() -> dict[str, Any]:
    """bf16 on this machine, and what `training.precision: auto` resolves to (util.precision decides it)."""
    import torch

    from xft_core.util.precision import cpu_has_native_bf16, resolve_precision

    device = best_device()
    return {"cpu_native_bf16": cpu_has_native_bf16(),
            "gpu_bf16": bool(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else None,
            "device": device, "auto": resolve_precision("auto", device)}


def threads() -> dict[str, Any]:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(), "usable_cores": usable,
            **{name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def plugins() -> list[dict[str, Any]]:
    """Each plugin with its distribution and what it provides, {kind: [names]} (as `xft plugins` lists them; xft's own
    commands aside)."""
    from xft_core.hooks.descriptors import KINDS, SINGULAR
    from xft_core.hooks.manager import PluginError, collect, get_plugin_manager, plugin_distribution

    pm = get_plugin_manager()
    provided: dict[str, dict[str, list[str]]] = {}
    problems: list[str] = []
    for kind in KINDS:
        try:
            for name, item in collect(pm, kind).items():
                provided.setdefault(item.plugin, {}).setdefault(SINGULAR[kind], []).append(name)
        except PluginError as exc:  # a conflict is exactly what a doctor should show, not die of
            problems.append(str(exc))
    rows = []
    for plugin_name, plugin in sorted(pm.list_name_plugin(), key=lambda x: x[0] or ""):
        if plugin is None or (plugin_name or "").startswith("xft_core.cli."):  # None: blocked, never loaded
            continue
        distribution, version = plugin_distribution(pm, plugin_name)
        rows.append({"plugin": plugin_name, "distribution": distribution, "version": version,
                     "provides": provided.get(plugin_name, {})})
    return rows + [{"plugin": "(error)", "distribution": "", "version": "", "provides": {"error": [p]}} for p in problems]


def blocked_plugins() -> list[str]:
    """Plugin names blocked (XFT_BLOCK_PLUGINS): pluggy keeps them registered as None, so that they never load."""
    from xft_core.hooks.manager import get_plugin_manager

    pm = get_plugin_manager()
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is None and name and pm.is_blocked(name))


def accelerate_config_report(path: str | None) -> dict[str, Any]:
    """The Accelerate config `accelerate launch` would read (--config_file, else accelerate's default file), in
    brief, and whether xft trains under it."""
    import yaml
    from accelerate.commands.config import config_args

    file = Path(path) if path else Path(config_args.default_config_file)
    if not file.is_file():
        if path:
            raise FileNotFoundError(f"--accelerate-config: no file {file}")
        return {"file": None, "summary": "none: single process", "default_file": str(file)}
    try:
        loaded = config_args.load_config_from_file(str(file))
    except (ValueError, TypeError, KeyError, AttributeError, OSError, yaml.YAMLError) as exc:  # a malformed file: a finding
        return {"file": str(file), "summary": f"unreadable: {exc}", "xft": "accelerate cannot read it"}
    mode = str(getattr(loaded.distributed_type, "value", loaded.distributed_type))
    keys = ("num_processes", "num_machines", "machine_rank", "mixed_precision", "use_cpu")
    fields = {k: getattr(loaded, k, None) for k in keys}
    stage = (loaded.deepspeed_config or {}).get("zero_stage") if mode == "DEEPSPEED" else None
    version = int((loaded.fsdp_config or {}).get("fsdp_version", 1)) if mode == "FSDP" else None
    summary = f"{mode}, {fields['num_processes']} processes on {fields['num_machines']} machine(s), " \
              f"mixed_precision {fields['mixed_precision']}" + (f", ZeRO-{stage}" if stage is not None else "")
    return {"file": str(file), "distributed_type": mode, **fields, "zero_stage": stage, "summary": summary,
            "xft": xft_verdict(mode, stage, version)}


def xft_verdict(mode: str, stage: Any, fsdp_version: int | None = None) -> str:
    """'supported', or why xft refuses the mode: the very check a training run makes (training.prepare)."""
    from types import SimpleNamespace

    from xft_core.config import ConfigError
    from xft_core.training.prepare import check_distributed

    plugin = SimpleNamespace(zero_stage=stage)
    accelerator = SimpleNamespace(distributed_type=mode, state=SimpleNamespace(
        deepspeed_plugin=plugin, fsdp_plugin=SimpleNamespace(fsdp_version=fsdp_version or 1)))
    try:
        check_distributed(accelerator)
    except ConfigError as exc:
        return f"refused: {exc}"
    return "supported"


def model_cache() -> dict[str, Any]:
    """xft's cache (converted GGUF models and the like): which model folders it holds, and whether the `demo`
    extra (the embedded Gemma 3 270M) is installed."""
    from xft_core.models import cache_dir

    root = cache_dir()
    models = []
    if root.is_dir():
        for folder in sorted(root.glob("*/*")):
            if folder.name.startswith(".") or not (folder / "config.json").is_file():
                continue
            files = [f for f in folder.iterdir() if f.is_file()]
            models.append({"path": str(folder), "gib": round(sum(f.stat().st_size for f in files) / 2**30, 2),
                           "weights": any(f.suffix in (".safetensors", ".bin") for f in files)})
    return {"dir": str(root), "exists": root.is_dir(), "models": models, "embedded": extra_packages("demo")}


def extra_packages(extra: str) -> dict[str, Any]:
    """{"packages": {name: version or None}, "installed": all present} for one of xft's extras (`pip install 'xft[demo]'`)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(r) for r in metadata.requires("xft") or []]
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return {"extra": extra, "packages": {}, "installed": None}
    names = [r.name for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})
             and not r.marker.evaluate({"extra": ""})]
    packages = {name: package_version(name) for name in names}
    return {"extra": extra, "packages": packages, "installed": all(packages.values())}


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _call(function: Any) -> Any:
    try:
        return function()
    except Exception:  # an optional fact this torch build cannot tell
        return None


# ------------------------------------------------------------------------------------------------ the table
def print_report(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t, d, p, th = report["torch"], report["devices"], report["precision"], report["threads"]
    table = Table(title=f"xft doctor: xft {report['xft']}, Python {report['python']}", show_lines=True)
    table.add_column("check", style="bold")
    table.add_column("value", overflow="fold")
    gpus = [f"cuda:{g['index']} {g['name']}, {g['memory_gib']} GiB, compute {g['capability']}"
            + (", bf16" if g["bf16"] else ", no bf16") for g in d["cuda"]]
    rows = [
        ("platform", report["platform"]),
        ("torch", f"{t['version']} ({t['build']}" + (f", cuDNN {t['cudnn']}" if t["cudnn"] else "")
         + (f", CPU {t['cpu_capability']}" if t["cpu_capability"] else "") + ")"),
        ("devices", "\n".join([f"CPU: {d['cpu_cores']} cores", *(gpus or ["CUDA: none"]),
                               f"MPS: {'yes' if d['mps'] else 'no'}", f"XPU: {', '.join(d['xpu']) or 'none'}"])),
        ("bf16", f"CPU native bf16 (AVX512_BF16 or AMX): {'yes' if p['cpu_native_bf16'] else 'no'}"
         + ("" if p["gpu_bf16"] is None else f"\nGPU bf16: {'yes' if p['gpu_bf16'] else 'no'}")),
        ("precision: auto", f"{p['auto']} on {p['device']}"),
        ("threads", f"torch {th['torch']} (inter-op {th['interop']}), {th['usable_cores']} usable cores, "
                    f"OMP_NUM_THREADS={th['OMP_NUM_THREADS'] or 'unset'}"),
        ("packages", ", ".join(f"{k} {v or 'missing'}" for k, v in report["packages"].items())),
        ("plugins", "\n".join([*(f"{r['plugin']} ({r['distribution']}{' ' + r['version'] if r['version'] else ''}): "
                                  + ("; ".join(f"{kind} {', '.join(names)}" for kind, names in r["provides"].items())
                                     or "hooks only") for r in report["plugins"]),
                                *([f"blocked (XFT_BLOCK_PLUGINS): {', '.join(report['blocked_plugins'])}"]
                                  if report["blocked_plugins"] else [])]) or "none"),
    ]
    a = report["accelerate_config"]
    rows.append(("accelerate config", (f"{a['file']}\n" if a["file"] else "") + a["summary"]
                 + (f"\nxft: {a['xft']}" if a.get("xft") else "")))
    c = report["model_cache"]
    cached = [f"{m['path']} ({m['gib']} GiB{'' if m['weights'] else ', no weights'})" for m in c["models"]]
    embedded = c["embedded"]
    extra = ", ".join(f"{k} {v or 'missing'}" for k, v in embedded["packages"].items()) or "unknown (xft not installed)"
    rows.append(("model cache", "\n".join([c["dir"] + ("" if c["exists"] else " (not created yet)"), *cached,
                                           f"embedded model (xft[{embedded['extra']}]): {extra}"])))
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    console().print(table)
