"""What the router knows about each adapter package: where it is, its version, which languages it serves."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from xft_core.adapters import MANIFEST, AdapterError, Manifest


@dataclass
class RouterStats:
    hits: int = 0  # an adapter a request needed was already loaded
    misses: int = 0  # it had to be loaded from disk
    evictions: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    forwards: int = 0  # forward passes (a mixed-language batch is one)
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Package:
    folder: Path
    manifest: Manifest
    version: int
    mixed_batch: bool


def find_packages(path: str | Path) -> dict[str, Path]:
    """Adapter packages under a run folder (`run/adapters/*`), an adapters folder, or one package folder.

    Names are the folder names (for a run, the languages or "multilingual")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder (give a run folder, its adapters/ folder, or one adapter package)")
    if not path.is_dir():
        raise AdapterError(f"{path}: not a folder (give a run folder, its adapters/ folder, or one adapter package)")
    if (path / MANIFEST).is_file():
        return {path.name: path}
    for parent in (path / "adapters", path):
        if parent.is_dir():
            found = {p.name: p for p in sorted(parent.iterdir()) if p.is_dir() and (p / MANIFEST).is_file()}
            if found:
                return found
    raise AdapterError(f"{path}: holds no xft adapter package (a folder with {MANIFEST}), neither itself nor under adapters/")


def routes_for(packages: Mapping[str, Package]) -> dict[str, str]:
    """Language -> adapter, over the languages each package serves (its manifest's `serves`, else the languages it
    was trained on). A single-language package beats a multilingual one covering the language; among
    several single-language packages for one language, the one named after it wins, else the first registered
    (the others, say a candidate `de-v2` next to `de`, answer when named per row with `adapters=[...]`)."""
    routes: dict[str, str] = {}
    for single in (False, True):
        claimed: dict[str, str] = {}
        for name, package in packages.items():
            languages = package.manifest.serves
            if (len(languages) == 1) != single:
                continue
            for language in languages:
                if language not in claimed or name == language:
                    claimed[language] = name
        routes.update(claimed)
    return routes

