"""Adapter management for `xft serve`: what GET, PUT and DELETE /v1/adapters do to the router.

Each function runs on the inference thread between two batches (see `batcher.py`), so it may change the
router freely: no forward is running. A failed change leaves the router as it found it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.inference.protocol import RouterLike


def describe(router: RouterLike) -> dict[str, Any]:
    """Registered adapters with their folders, versions, languages and pinning; loaded ones in LRU order."""
    registered = router.registered()
    loaded = router.loaded()
    pinned = router.pinned()
    adapters = {
        name: {
            "path": str(registered[name]),
            "version": router.adapter_version(name),
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
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"adapter folder {folder} does not exist (on the server's file system)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the adapter package's folder (the one holding xft.json)")
    previous = router.registered().get(name)
    if previous is not None:
        router.replace(name, folder)
        if name not in router.loaded():  # it was evicted or never loaded: load the new version now, not on a request
            try:
                router.load(name)
            except Exception:
                router.replace(name, previous)  # keep serving what worked (its version counts on)
                raise
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
        "replaced": previous is not None,
        "pinned": name in router.pinned(),
        "languages": list(router.adapter_languages(name)),
        "path": str(folder),
    }


def delete_adapter(router: RouterLike, name: str) -> dict[str, Any]:
    """Unregister `name` (unloading it, pinned or not); KeyError when no such adapter is registered."""
    if name not in router.registered():
        raise KeyError(name)
    version = router.adapter_version(name)
    router.unregister(name)
    return {"name": name, "deleted": True, "version": version}
