"""Which package an export reads, where it may write, and the record (`xft-export.json`) every export carries."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from xft_core.adapters import MANIFEST, AdapterError, Manifest
from xft_core.util.runfiles import is_run_folder
from xft_core.version import __version__

EXPORT_INFO = "xft-export.json"
WHERE = "give a run folder, its adapters/ folder, or one adapter package"


class ExportError(AdapterError):
    """An export that cannot be made as asked: the package, the target or the output folder does not fit."""


def find_package(source: str | Path, adapter: str | None = None) -> Path:
    """The one adapter package of `source` to export: the package itself, the only one of a run, or `adapter`."""
    path = Path(source)
    if not path.is_dir():
        raise ExportError(f"{path}: no such folder ({WHERE})")
    if (path / MANIFEST).is_file():
        if adapter not in (None, path.name):
            raise ExportError(f"{path}: is the adapter package '{path.name}' itself; drop --adapter {adapter} or give the "
                              "run folder that holds several packages")
        return path
    found: dict[str, Path] = {}
    for parent in (path / "adapters", path):
        if parent.is_dir():
            found = {p.name: p for p in sorted(parent.iterdir()) if p.is_dir() and (p / MANIFEST).is_file()}
            if found:
                break
    if not found:
        raise ExportError(f"{path}: holds no xft adapter package (a folder with {MANIFEST}), neither itself nor under "
                          f"adapters/ ({WHERE})")
    if adapter is None:
        if len(found) == 1:
            return next(iter(found.values()))
        raise ExportError(f"{path}: holds {len(found)} adapter packages ({', '.join(found)}); choose one with "
                          "--adapter NAME (Python: adapter=NAME)")
    if adapter not in found:
        raise ExportError(f"{path}: no adapter package '{adapter}' (packages: {', '.join(found)})")
    return found[adapter]


def check_out(out: Path, package: Path) -> None:
    """`out` is new, empty, or an earlier export (replaced whole), and neither inside the package nor holding it."""
    out, package = Path(out), Path(package)
    if out.is_symlink():
        raise ExportError(f"--out {out}: is a symbolic link (to {os.readlink(out)}); an export replaces its folder whole, "
                          f"which would replace the link, not write where it points. Give the folder itself: "
                          f"--out {out.resolve()}")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_INFO).is_file():
        what = "an xft run folder" if is_run_folder(out) else "files that are not an xft export"
        raise ExportError(f"--out {out}: holds {what}; give a new or empty folder (an earlier export, with "
                          f"{EXPORT_INFO}, is replaced)")
    target, source = out.resolve(), package.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise ExportError(f"--out {out}: overlaps the package it exports ({package}); write the export elsewhere")


def writable_out(out: Path, error: OSError) -> None:
    """An OSError while writing the export: when it names the hidden temporary folder beside `out` (or `out`), say
    it of `--out` instead (raises ExportError); otherwise return and let it propagate."""
    out = Path(out)
    name = str(getattr(error, "filename", "") or "")
    if name and (name == str(out) or Path(name).parent == out.parent and Path(name).name.startswith(f".{out.name}.")):
        raise ExportError(f"--out {out}: cannot write the export there ({error.strerror or error}); "
                          f"check that {out.parent} exists and is writable, and has free space") from None


def export_record(package: Path, manifest: Manifest, to: str, **extra: Any) -> dict[str, Any]:
    """What `xft-export.json` says of every export: the source package and its manifest, then the target's own."""
    data = manifest.data
    record: dict[str, Any] = {
        "format": 1,
        "xft_version": __version__,
        "to": to,
        "source_package": str(Path(package).resolve()),
        "adapter": Path(package).name,
        "run": data.get("run"),
        "step": data.get("step"),
        "base_model": data.get("base_model"),
        "base_fingerprint": data.get("base_fingerprint"),
        "manifest_sha256": hashlib.sha256((Path(package) / MANIFEST).read_bytes()).hexdigest(),
        "task": data.get("task"),
        "task_options": data.get("task_options", {}),
        "strategy": manifest.strategy,
        "strategy_options": data.get("strategy_options", {}),
        "languages": manifest.serves,
    }
    if "labels" in data:
        record["labels"] = list(data["labels"])
    record.update(extra)
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record
