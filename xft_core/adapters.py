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

from xft_core.io import atomic_folder, atomic_write_json

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
