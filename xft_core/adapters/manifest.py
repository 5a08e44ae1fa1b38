"""The manifest `xft.json` beside a strategy's files, and the base-model fingerprint it records."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xft_core.util.files import atomic_write_json

MANIFEST = "xft.json"


class AdapterError(ValueError):
    """An adapter package is missing, malformed, or does not fit the base model."""


def base_fingerprint(folder: Path) -> str:
    """sha256 over the base model's weight files (names and contents), cached beside them by size and mtime."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf") and p.is_file())
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    cache = folder / ".xft-fingerprint.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == [list(s) for s in stamp]:
            return str(cached["sha256"])
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
    """The parsed `xft.json` of one package: base model, task, labels, languages, strategy, metrics."""

    data: dict[str, Any]

    @property
    def languages(self) -> list[str]:
        return list(self.data.get("languages", []))

    @property
    def strategy(self) -> str:
        return str(self.data.get("strategy", ""))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise AdapterError(f"{folder}: no {MANIFEST} (not an xft adapter package)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AdapterError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise AdapterError(f"{path}: expected a JSON object")
        return cls(data)
