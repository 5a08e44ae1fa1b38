"""Atomic writes: a crash never leaves a half-written file or folder where a good one was.

Temporaries live beside their target under names only these writers make: `.<name>.<random>.tmp` (a file or
folder being written) and `.<name>.old-<pid>` (the previous folder, moved aside for a moment while the new one
is renamed into place). A process killed mid-write leaves them behind; `recover_stale` puts a moved-aside
folder back where its replacement never arrived and removes the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_SUFFIX = ".tmp"
OLD_MARK = ".old-"
# tempfile's random part is letters, digits and '_'; the pid of `.old-<pid>` is digits
STALE = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]+\.tmp|old-\d+)$")


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    Its files reach the disk (fsync) before the rename, so after a power loss the folder under `target` is never
    one with cut-short files. An existing `target` is moved aside first and removed only after the new folder is
    in place, so at every moment either the old or the new complete folder exists under a known name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX))
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}{OLD_MARK}{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_stale(folder: Path) -> list[str]:
    """Undo what writers killed mid-write left in `folder`; returns one line per thing done.

    A moved-aside `.<name>.old-<pid>` whose `<name>` is missing goes back to `<name>` (its replacement was never
    renamed into place); otherwise it and every `.<name>.<random>.tmp` are removed. Call it only where no other
    process is writing (the start of a run, on the main process)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    done = []
    for path in sorted(folder.iterdir()):
        match = STALE.match(path.name)
        if not match:
            continue
        target = folder / match["name"]
        if OLD_MARK in path.name and path.is_dir() and not target.exists():
            os.replace(path, target)
            done.append(f"restored {target} from {path.name}, left by an interrupted write")
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        done.append(f"removed {path}, left by an interrupted write")
    return done


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [*(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform without directory handles (Windows): the rename is as durable as it gets
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
