"""The fingerprint of a base model folder: what a package's `base_fingerprint` must match to be attached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xft_core.util.files import atomic_write_json


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
