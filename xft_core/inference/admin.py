"""Adapter management for `xft serve`: what GET, PUT and DELETE /v1/adapters do to the router.

Each function runs on the inference thread between two batches (see `batcher.py`), so it may change the
router freely: no forward is running. A failed change leaves the router as it found it: PUT checks what it can
(name, folder, a free slot to pin) before touching anything, and the router's own loads are all or nothing.
Who may call PUT and DELETE, and which folders PUT may name, is decided before (security.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xft_core.adapters import AdapterError
from xft_core.inference.packages import ADAPTER_NAME
from xft_core.inference.protocol import RouterLike


class Conflict(AdapterError):
    """The change would break what the server is set up to do (deleting the fallback adapter)."""


def check_name(name: str) -> None:
    if not ADAPTER_NAME.fullmatch(name) or name == "__base__":
        raise AdapterError(f"adapter name {name[:80]!r} must be 1 to 64 letters, digits, '_' or '-', starting with a "
                           "letter or digit")


def describe(router: RouterLike, *, show_path: Callable[[Path], str | None] = str) -> dict[str, Any]:
    """Registered adapters with their folders, versions, content hashes, languages and pinning; loaded ones in LRU
    order. `show_path` decides what the listing says of each folder (None: nothing)."""
    registered = router.registered()
    loaded = router.loaded()
    pinned = router.pinned()
    adapters = {
        name: {
            "path": show_path(registered[name]),
            "version": router.adapter_version(name),
            "hash": router.adapter_hash(name),
            "languages": list(router.adapter_languages(name)),
            "loaded": name in loaded,
            "pinned": name in pinned,
        }
        for name in sorted(registered)
    }
    return {
        "registered": sorted(registered),
        "loaded": loaded,
        "pinned": sorted(pinned),
        "capacity": router.capacity,
        "fallback": router.fallback,
        "adapters": adapters,
        "router_stats": router.stats.as_dict(),
    }


def put_adapter(router: RouterLike, name: str, folder: Path, pin: bool | None = None) -> dict[str, Any]:
    """Load `folder` as adapter `name`, fully, now: a known name gets a new version (the router loads it beside
    the old one and switches over), a new name is registered. `pin`: True pins, False unpins, None keeps."""
    check_name(name)
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"adapter folder {folder} does not exist (on the server's file system)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the adapter package's folder (the one holding xft.json)")
    pinned = router.pinned()
    if pin and name not in pinned and len(pinned) >= router.capacity:
        raise AdapterError(f"cannot pin '{name}': all {router.capacity} cache slots are pinned ({', '.join(pinned)})")
    previous = router.registered().get(name)
    if previous is not None:
        router.replace(name, folder, load=True)  # all or nothing: on failure the old version still answers
    else:
        try:
            router.register(name, folder, pin=bool(pin))
            router.load(name)
        except Exception:
            if name in router.registered():
                router.unregister(name)  # a failed PUT leaves nothing behind
            raise
    if pin:
        router.pin(name)
    elif pin is False and name in router.pinned():
        router.unpin(name)
    return {
        "name": name,
        "version": router.adapter_version(name),
        "hash": router.adapter_hash(name),
        "replaced": previous is not None,
        "pinned": name in router.pinned(),
        "languages": list(router.adapter_languages(name)),
        "path": str(folder),
    }


def delete_adapter(router: RouterLike, name: str) -> dict[str, Any]:
    """Unregister `name` (unloading it, pinned or not); KeyError when no such adapter is registered, Conflict for
    the fallback adapter (the languages it answers for would start failing)."""
    if name not in router.registered():
        raise KeyError(name)
    if name == router.fallback:
        raise Conflict(f"adapter '{name}' is the fallback for languages without their own adapter; replace it with PUT, "
                       "or restart the server with another --fallback, to remove it")
    version, content = router.adapter_version(name), router.adapter_hash(name)
    router.unregister(name)
    return {"name": name, "deleted": True, "version": version, "hash": content}
