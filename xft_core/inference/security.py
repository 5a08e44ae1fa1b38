"""Who may change the adapters of `xft serve`, and which folders they may load (docs/security.md).

* With an admin token (`--admin-token` or `XFT_ADMIN_TOKEN`), PUT and DELETE /v1/adapters need
  `Authorization: Bearer <token>`, compared in constant time; GET /v1/adapters shows package paths only to it.
* Without one, adapter administration is open only when the server listens on loopback, and then only to
  loopback clients whose request did not come through a proxy (a proxy in front of a loopback server would
  otherwise hand every client the admin endpoints); anywhere else PUT and DELETE answer 403 saying how to
  turn them on.
* PUT loads only folders under the adapter roots (`--adapter-root`, default: the folder being served), judged
  after resolving symbolic links and `..`; a path outside gets the same answer whether it exists or not.

Example::

    access = AdminAccess("s3cret-token-of-32-characters..", trust_loopback=False, roots=[Path("/srv/adapters")])
    access.check({"authorization": "Bearer s3cret-token-of-32-characters.."}, "10.0.0.7")  # passes
    access.resolve("/srv/adapters/../etc")  # Denied(403, ...): outside the roots
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xft_core.util.errors import UserError

TOKEN_ENV = "XFT_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
ENABLE = (f"start the server with an admin token (environment variable {TOKEN_ENV}, or --admin-token) and send "
          "'Authorization: Bearer <token>'")


class Denied(Exception):
    """A request that may not do what it asked: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a bind address or a client address) is this machine's loopback: 127.0.0.0/8, ::1, localhost."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()  # equal lengths, so the comparison leaks not even the token's length


class AdminAccess:
    def __init__(self, token: str | None = None, *, trust_loopback: bool = False, roots: Sequence[str | Path] = ()):
        if token is not None and (not token or token != token.strip()):
            raise UserError("the admin token is empty or starts or ends with whitespace, which the 'Authorization: "
                            "Bearer' header loses, so no client could ever authenticate; use e.g. "
                            "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise UserError(f"the admin token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        self._token = _digest(token.encode("utf-8")) if token else None
        self.trust_loopback = trust_loopback
        self.roots = [Path(os.path.realpath(os.fspath(root))) for root in roots]

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def describe(self) -> str:
        """One line for the server's log: how administration is set up."""
        roots = ", ".join(map(str, self.roots)) or "none"
        if self._token is not None:
            return f"adapter administration: admin token required; adapter roots: {roots}"
        if self.trust_loopback:
            return f"adapter administration: open to loopback clients (no admin token); adapter roots: {roots}"
        return "adapter administration: off (no admin token and not on loopback)"

    # ------------------------------------------------------------------------------------------ requests
    def check(self, headers: Mapping[str, str], client: str | None) -> None:
        """Pass, or raise Denied(401 / 403), for a request that wants to change adapters. `headers` has
        lower-case names; `client` is the peer's address (None on a UNIX socket)."""
        if self._token is not None:
            scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
            given = credential.strip().encode("latin-1", "replace")  # header values arrive as latin-1 text
            if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(given), self._token):
                raise Denied(401, "adapter administration needs 'Authorization: Bearer <token>' with this server's admin token")
            return
        if not self.trust_loopback:
            raise Denied(403, f"adapter administration is off: this server listens beyond loopback without an admin token; "
                              f"{ENABLE}")
        if client is not None and not is_loopback(client):
            raise Denied(403, f"adapter administration without an admin token is open to loopback clients only; {ENABLE}")
        forwarded = [name for name in PROXY_HEADERS if name in headers]
        if forwarded:
            raise Denied(403, f"adapter administration without an admin token is refused to requests that came through "
                              f"a proxy (header {forwarded[0]}); {ENABLE}")

    def allowed(self, headers: Mapping[str, str], client: str | None) -> bool:
        """Whether this request may see administration details (package paths). A wrong token is still a 401."""
        try:
            self.check(headers, client)
        except Denied:
            if self._token is not None and "authorization" in headers:
                raise
            return False
        return True

    # ---------------------------------------------------------------------------------------------- paths
    def resolve(self, raw: str) -> Path:
        """The real folder behind `raw` (an absolute path), if it lies under an adapter root; else Denied."""
        if not os.path.isabs(raw):
            raise Denied(400, f"path must be absolute on the server, got {raw[:200]!r}")
        if not self.roots:
            raise Denied(403, "this server loads adapters from no folder: start it with --adapter-root DIR")
        real = Path(os.path.realpath(raw))
        if any(real == root or real.is_relative_to(root) for root in self.roots):
            return real
        raise Denied(403, f"path is outside the adapter roots of this server ({', '.join(map(str, self.roots))}); "
                          "put the package under one of them, or start the server with --adapter-root for its folder")

    def shown(self, folder: Path) -> str | None:
        """A package's folder as an administrator's listing shows it: absolute inside the roots, else nothing."""
        real = Path(os.path.realpath(folder))
        return str(folder) if any(real == root or real.is_relative_to(root) for root in self.roots) else None


class AdminGate:
    """ASGI middleware: PUT and DELETE under /v1/adapters/ pass only `access.check`, before anything reads the body,
    so an unauthorised client learns nothing from validation errors either."""

    def __init__(self, app: Any, access: AdminAccess):
        self.app = app
        self.access = access

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope.get("method") in ("PUT", "DELETE")
                and scope.get("path", "").startswith("/v1/adapters/")):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            client = scope.get("client")
            try:
                self.access.check(headers, client[0] if client else None)
            except Denied as denied:
                return await _refuse(send, denied)
        await self.app(scope, receive, send)


async def _refuse(send: Any, denied: Denied) -> None:
    body = json.dumps({"detail": denied.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if denied.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="xft serve"'))
    await send({"type": "http.response.start", "status": denied.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
