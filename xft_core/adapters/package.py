"""Adapter packages: peft's files, the task-head weights beside them, and xft's manifest `xft.json`.

A package is written into a temporary folder and renamed into place, so a crash leaves the previous
package intact. Loading checks the manifest's base-model fingerprint against the base in memory.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from xft_core.util.files import atomic_folder, atomic_write_json

MANIFEST = "xft.json"
HEAD_FILE = "head.safetensors"


class AdapterError(ValueError):
    """An adapter package is missing, malformed, or does not fit the base model."""


def base_fingerprint(folder: Path) -> str:
    """sha256 over the base model's weight files (names, sizes and contents), cached beside by size+mtime."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf") and p.is_file())
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    cache = folder / ".xft-fingerprint.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == [list(s) for s in stamp]:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()
    try:
        atomic_write_json(cache, {"stamp": stamp, "sha256": value})
    except OSError:
        pass  # a read-only model folder only costs a re-hash next time
    return value


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]

    @property
    def languages(self) -> list[str]:
        return list(self.data.get("languages", []))

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise AdapterError(f"{folder}: no {MANIFEST} (not an xft adapter package)")
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise AdapterError(f"{path}: not valid JSON: {exc}") from None


def save_package(
    folder: Path,
    *,
    model: Any,
    strategy: Any,
    language: str | None,
    head: Any,
    manifest: Mapping[str, Any],
) -> Path:
    """Write one adapter package atomically: strategy files, head weights, manifest (written last)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        strategy.save(model, tmp, language)
        head_state = head_weights(model, head, language)
        if head_state:
            save_file(head_state, str(tmp / HEAD_FILE), metadata={"format": "pt"})
        atomic_write_json(tmp / MANIFEST, {**manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return folder


def head_weights(model: Any, head: Any, language: str | None) -> dict[str, Any]:
    """The task-head tensors for `language`'s adapter, named as in the plain base model."""
    modules = head.head_modules(model)
    if not modules:
        return {}
    name = language or "default"
    state = {}
    for key, tensor in model.state_dict().items():
        for module in modules:
            marker = f"{module}.modules_to_save.{name}."
            if marker in key:
                short = module + "." + key.split(marker, 1)[1]
                state[short] = tensor.detach().cpu().contiguous()
    return state


# ----------------------------------------------------------------------------------------------- loading
@dataclass
class Base:
    """A base model loaded once with a task head on it, ready to carry adapters."""

    model: Any
    tokenizer: Any
    head: Any
    model_path: Path
    fingerprint: str
    manifest: Manifest  # the manifest that described it (task, labels, base reference)
    pm: Any


def head_from_manifest(manifest: Manifest, pm: Any) -> Any:
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "task_heads", manifest.data["task"], config_key=f"{MANIFEST}: task")
    head = spec.build(build_options(spec.options, manifest.data.get("task_options", {}), key="task_options"))
    head.load_label_info(manifest.data)
    return head


def strategy_from_manifest(manifest: Manifest, pm: Any) -> tuple[Any, Any]:
    """(spec, built strategy) of the strategy that trained this package."""
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "strategies", manifest.data["strategy"], config_key=f"{MANIFEST}: strategy")
    return spec, spec.build(build_options(spec.options, manifest.data.get("strategy_options", {}), key="strategy_options"))


def load_base(folder_or_manifest: Path | Manifest, pm: Any = None, *, model: str | None = None, device: str | None = None) -> Base:
    """Load the base model an adapter package was trained on (or `model`), with the package's task head."""
    from xft_core.models import load_tokenizer, quiet_transformers, resolve_model
    from xft_core.hooks.manager import get_plugin_manager

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


def check_compatible(base: Base, folder: Path) -> Manifest:
    """The package's manifest, after checking it was trained on this base model and task."""
    manifest = Manifest.read(folder)
    want, have = manifest.data.get("base_fingerprint"), base.fingerprint
    if want and want != have:
        raise AdapterError(
            f"{folder}: adapter was trained on a different base model (fingerprint {want[:12]}…, "
            f"base '{manifest.data.get('base_model')}'); the loaded base is {base.model_path} ({have[:12]}…)."
        )
    if manifest.data.get("task") != base.manifest.data.get("task"):
        raise AdapterError(f"{folder}: task '{manifest.data.get('task')}' does not match the loaded base's task '{base.manifest.data.get('task')}'")
    if manifest.data.get("labels") != base.manifest.data.get("labels"):
        raise AdapterError(f"{folder}: label set {manifest.data.get('labels')} differs from the base's {base.manifest.data.get('labels')}")
    unsafe = [p.name for p in Path(folder).iterdir() if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    if unsafe:
        raise AdapterError(f"{folder}: holds pickle files ({', '.join(unsafe)}); xft loads only safetensors")
    return manifest


def attach(base: Base, model: Any, folder: Path, name: str) -> Any:
    """Load the package in `folder` onto `model` (the base, or a model already carrying adapters) as `name`."""
    manifest = check_compatible(base, Path(folder))
    _, strategy = strategy_from_manifest(manifest, base.pm)
    return strategy.load(model, Path(folder), name)
