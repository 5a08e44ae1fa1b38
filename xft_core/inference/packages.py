"""What the router knows about each adapter package: where it is, its version and content hash, which languages
it serves; and how its files are read for loading (hashed and copied aside in one pass).

Why copy: the router versions adapters by the hash of their files, and a package folder can change while it is
read (a new training run writing into it, an operator copying files over). Reading every file once into a private
folder, hashing as it goes, and loading from that copy means the weights that answer are exactly the bytes the
reported hash names, whatever happens to the folder meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from xft_core.adapters import MANIFEST, AdapterError, Manifest
from xft_core.evaluation.calibration import Calibration

ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")  # names become module keys: no dots
HASH_CHARS = 12  # of the sha256 hex digest: 48 bits, plenty to tell an adapter's versions apart
_CHUNK = 1 << 20


class AdapterLoadError(AdapterError):
    """An adapter package could not be loaded onto the model (unreadable, truncated, or weights that do not fit);
    the router is exactly as it was before the attempt."""


@dataclass
class RouterStats:
    hits: int = 0  # an adapter a request needed was already loaded
    misses: int = 0  # it had to be loaded from disk
    evictions: int = 0
    loads: int = 0
    failed_loads: int = 0  # loads that failed and were undone
    load_seconds: float = 0.0
    forwards: int = 0  # forward passes (a mixed-language batch is one)
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Package:
    folder: Path
    manifest: Manifest
    version: int  # counts up per name: on every replace, and when a reload finds the files changed
    hash: str  # content hash of the strategy's files (every file but the manifest), HASH_CHARS hex digits
    mixed_batch: bool
    calibration: Calibration | None = None  # per-language label priors (calibration.json), applied to its rows


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


# ------------------------------------------------------------------------------------------ content
def package_files(folder: Path) -> list[str]:
    """The package's files as sorted relative paths ('/'-separated). Symbolic links are refused: a package holds
    its own regular files, so what is hashed and loaded cannot point anywhere else on the server."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such adapter package folder")
    files = []
    for directory, subdirectories, names in os.walk(folder, followlinks=False):
        for name in [*subdirectories, *names]:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            relative = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                raise AdapterError(f"{folder}: holds a symbolic link ({relative}); adapter packages hold regular files only")
            if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                raise AdapterError(f"{folder}: holds {relative}, which is not a regular file")
            if stat.S_ISREG(mode):
                files.append(relative)
    return sorted(files)


def content_hash(folder: Path, *, copy_to: Path | None = None) -> str:
    """sha256 over the strategy's files (every file but the manifest: name, size, bytes), as HASH_CHARS hex digits.
    With `copy_to`, every file (manifest included) is also written there, from the same bytes that were hashed."""
    digest = hashlib.sha256()
    for relative in package_files(folder):
        source = Path(folder) / relative
        hashed = relative != MANIFEST
        target = None
        if copy_to is not None:
            (copy_to / relative).parent.mkdir(parents=True, exist_ok=True)
            target = (copy_to / relative).open("wb")
        try:
            with source.open("rb") as handle:
                if hashed:
                    digest.update(relative.encode("utf-8") + b"\0" + str(os.fstat(handle.fileno()).st_size).encode() + b"\0")
                while chunk := handle.read(_CHUNK):
                    if hashed:
                        digest.update(chunk)
                    if target is not None:
                        target.write(chunk)
        finally:
            if target is not None:
                target.close()
    return digest.hexdigest()[:HASH_CHARS]


@contextmanager
def staged(folder: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of the package in `folder` and its content hash, read in one pass; removed on exit."""
    copy = Path(tempfile.mkdtemp(prefix="xft-adapter-"))
    try:
        yield copy, content_hash(folder, copy_to=copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
