"""Adapter packages: the strategy's own files and xft's manifest `xft.json`, written atomically.

The strategy decides what its files are (peft's adapter_config.json + adapter_model.safetensors for LoRA, a
whole model for full fine-tuning, a plugin's own format); this module only writes the folder atomically, reads
the manifest, builds the head and strategy a package names, and checks that a package fits the base in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from xft_core.adapters.manifest import MANIFEST, AdapterError, Manifest, base_fingerprint
from xft_core.hooks import Strategy, StrategySpec, TaskHead
from xft_core.util.files import atomic_folder, atomic_write_json

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")


def save_package(folder: Path, *, model: Any, strategy: Strategy, adapter: str | None, head: TaskHead,
                 manifest: Mapping[str, Any]) -> Path:
    """Write one adapter package atomically: the strategy's files, then the manifest (last)."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        extra = strategy.save(model, tmp, adapter, head) or {}
        atomic_write_json(tmp / MANIFEST, {**manifest, **extra, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return folder


# ----------------------------------------------------------------------------------------------- loading
@dataclass
class Base:
    """A base model loaded once with a task head on it, ready to carry adapters."""

    model: Any
    tokenizer: Any
    head: TaskHead
    model_path: Path
    fingerprint: str
    manifest: Manifest  # the manifest that described it (task, labels, base reference)
    pm: Any


def head_from_manifest(manifest: Manifest, pm: Any) -> TaskHead:
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "task_heads", manifest.data["task"], config_key=f"{MANIFEST}: task")
    head = spec.build(build_options(spec.options, manifest.data.get("task_options", {}), key="task_options"))
    head.load_label_info(manifest.data)
    return head


def strategy_from_manifest(manifest: Manifest, pm: Any) -> tuple[StrategySpec, Strategy]:
    """(spec, built strategy) of the strategy that trained this package."""
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "strategies", manifest.strategy, config_key=f"{MANIFEST}: strategy")
    return spec, spec.build(build_options(spec.options, manifest.data.get("strategy_options", {}), key="strategy_options"))


def load_base(folder_or_manifest: Path | Manifest, pm: Any = None, *, model: str | None = None,
              device: str | None = None) -> Base:
    """Load the base model an adapter package was trained on (or `model`), with the package's task head."""
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import load_tokenizer, quiet_transformers, resolve_model

    quiet_transformers()
    pm = pm or get_plugin_manager()
    manifest = folder_or_manifest if isinstance(folder_or_manifest, Manifest) else Manifest.read(Path(folder_or_manifest))
    head = head_from_manifest(manifest, pm)
    model_path = resolve_model(model or manifest.data["base_model"], pm)
    tokenizer = load_tokenizer(model_path)
    base_model = head.build_model(model_path, tokenizer)
    if device:
        base_model.to(device)
    base_model.eval()
    return Base(base_model, tokenizer, head, model_path, base_fingerprint(model_path), manifest, pm)


def check_base(folder: Path, manifest: Manifest, fingerprint: str, base: str, *, key: str = "") -> None:
    """The package's `base_fingerprint` is `fingerprint` (of the base model `base`); a package without one is
    refused too, since nothing else tells what it was trained on. `key`: the config key that named the package."""
    where = f" (config key: {key})" if key else ""
    want = manifest.data.get("base_fingerprint")
    if not want:
        raise AdapterError(
            f"{folder}: {MANIFEST} has no base_fingerprint{where}, so nothing shows which base model the adapter was "
            "trained on. Train it again with xft (which writes it), or, if you know its base model, add it: "
            f'"base_fingerprint": the output of python -c "from xft_core.adapters import base_fingerprint; '
            f"print(base_fingerprint('BASE_MODEL_FOLDER'))\""
        )
    if want != fingerprint:
        raise AdapterError(
            f"{folder}: adapter was trained on a different base model{where} (fingerprint {str(want)[:12]}…, "
            f"base '{manifest.data.get('base_model')}'); the base here is {base} ({fingerprint[:12]}…)."
        )


def check_compatible(base: Base, folder: Path) -> Manifest:
    """The package's manifest, after checking it was trained on this base model and task, with no pickle files.
    Every path that attaches a package (`attach`, the router, the transfer matrix) goes through here."""
    manifest = Manifest.read(folder)
    check_base(folder, manifest, base.fingerprint, str(base.model_path))
    if manifest.data.get("task") != base.manifest.data.get("task"):
        raise AdapterError(f"{folder}: task '{manifest.data.get('task')}' does not match the loaded base's task "
                           f"'{base.manifest.data.get('task')}'")
    if manifest.data.get("labels") != base.manifest.data.get("labels"):
        raise AdapterError(f"{folder}: label set {manifest.data.get('labels')} differs from the base's "
                           f"{base.manifest.data.get('labels')}")
    unsafe = [p.name for p in Path(folder).iterdir() if p.suffix in PICKLE_SUFFIXES]
    if unsafe:
        raise AdapterError(f"{folder}: holds pickle files ({', '.join(unsafe)}); xft loads only safetensors")
    return manifest


def check_init_from(folder: Path, model_path: Path) -> Manifest:
    """A training run's `init_from` package was trained on the run's base model (`model_path`)."""
    manifest = Manifest.read(Path(folder))
    check_base(Path(folder), manifest, base_fingerprint(model_path), str(model_path), key="init_from")
    return manifest


def attach(base: Base, model: Any, folder: Path, name: str) -> Any:
    """Load the package in `folder` onto `model` (the base, or a model already carrying adapters) as `name`,
    through the strategy that saved it; returns the model to run."""
    manifest = check_compatible(base, Path(folder))
    _, strategy = strategy_from_manifest(manifest, base.pm)
    return strategy.attach(model, Path(folder), name, base.head)
