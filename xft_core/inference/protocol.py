"""What `xft serve` needs from a router: `RouterLike`, the part of `Router`'s public API the server calls.

The server is written against this protocol and nothing else, so its batching and adapter management can
be tested with a small fake (tests/test_server_protocol.py) and the real `xft_core.inference.router.Router` can
change inside without the server noticing. `Router` satisfies it structurally; no inheritance needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class StatsLike(Protocol):
    def as_dict(self) -> dict[str, Any]:
        """Counters as plain JSON values (GET /v1/adapters reports them as `router_stats`)."""
        ...


@runtime_checkable
class RouterLike(Protocol):
    """The router calls the server makes, all from its one inference thread.

    Example::

        from xft_core.inference.app import create_app
        from xft_core.inference.router import Router

        router: RouterLike = Router.from_run("runs/reviews")  # or any object with these members
        app = create_app(router)

    tests/test_server_protocol.py has a complete fake without a model (`GatedRouter`).
    """

    capacity: int  # most adapters loaded at once
    fallback: str | None  # adapter for languages without their own; None: the bare base model
    stats: StatsLike

    def predict(self, texts: Sequence[str], languages: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-able prediction per text, in order, each naming its `language`, `adapter` ("__base__" for the
        bare base model), and the `adapter_version` and `adapter_hash` of the weights that produced it (None for
        the base); `languages` holds a code or "auto" per text. Raises ValueError (AdapterError included) for input
        it cannot serve, `AdapterLoadError` (an AdapterError) when an adapter's files fail to load, RuntimeError
        when the model fails."""
        ...

    # registry
    def register(self, name: str, folder: Path, *, pin: bool = False) -> None:
        """Validate the adapter package in `folder` and record it as `name` (AdapterError if it does not fit)."""
        ...

    def unregister(self, name: str) -> None:
        """Forget `name`, unloading it too, pinned or not; AdapterError for the fallback adapter."""
        ...

    def registered(self) -> dict[str, Path]:
        """Adapter name -> package folder."""
        ...

    def replace(self, name: str, folder: Path, *, load: bool = False) -> int:
        """Swap in the package in `folder` as the next version of `name`; returns that version. A loaded adapter's
        new version (any adapter's, with `load=True`) loads now, all or nothing: if it fails, the old one is
        untouched and still answering."""
        ...

    def adapter_version(self, name: str) -> int:
        """A counter per name: 1 when registered, one more on every replace or changed reload."""
        ...

    def adapter_hash(self, name: str) -> str:
        """The content hash (hex) of the files of `name`'s current version."""
        ...

    def adapter_languages(self, name: str) -> list[str]: ...

    # cache
    def load(self, name: str) -> None: ...

    def loaded(self) -> list[str]:
        """Loaded adapters, least recently used first."""
        ...

    def pin(self, name: str) -> None:
        """Load `name` and keep it loaded."""
        ...

    def unpin(self, name: str) -> None: ...

    def pinned(self) -> list[str]: ...
