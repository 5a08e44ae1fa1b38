"""One process at a time per output folder (a run folder, a benchmark folder, an export folder).

Two `xft train` on one run folder would interleave their metrics and overwrite each other's checkpoints. The
first to start holds an OS lock (`flock`, through `filelock`) on a hidden file beside the folder,
`.<name>.lock`, and writes who it is (pid, host, command, start time) into `.<name>.lock.json`; a second
process fails at once with a `FolderLocked` error naming that holder. The kernel drops the lock when its
process dies, even by `kill -9`; the holder file it leaves behind is then stale, and the next process takes
over with a warning naming the dead holder.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from xft_core.util.errors import UserError
from xft_core.util.files import atomic_write_json


class FolderLocked(UserError):
    """Another process holds the folder."""


class StaleLockWarning(UserWarning):
    """A lock left by a process that is gone was taken over."""


def lock_paths(folder: Path) -> tuple[Path, Path]:
    """The lock file and the holder file of `folder` (beside it, so that a folder replaced by a rename, as an
    export is, keeps its lock)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock", folder.parent / f".{folder.name}.lock.json"


def describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {when}"
            f" ({holder.get('command', '?')})")


def read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_main_process() -> bool:
    """False in the other processes of a distributed launch (they share the main process's folder)."""
    return os.environ.get("RANK", "0") in ("", "0")


@contextmanager
def hold_folder(folder: str | Path, command: str) -> Iterator[None]:
    """Hold `folder` for this process while the block runs; `FolderLocked` (naming the holder) if another
    process holds it. In the non-main processes of a distributed launch, a no-op."""
    if not is_main_process():
        yield
        return
    from filelock import FileLock, Timeout

    folder = Path(folder)
    lock_file, holder_file = lock_paths(folder)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = read_holder(holder_file)
        raise FolderLocked(
            f"{folder} is in use by another process: {describe(holder) if holder else 'holder unknown'}. Wait for it "
            f"to finish, or use another folder; if that process is gone, delete {lock_file}") from None
    try:
        stale = read_holder(holder_file)
        if stale:
            warnings.warn(StaleLockWarning(
                f"{folder}: taking over the lock of {describe(stale)}, which ended without releasing it "
                "(killed?); its last complete checkpoint and outputs are kept"), stacklevel=3)
        atomic_write_json(holder_file, {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                        "started": time.time()})
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()
