"""The HTTP app of `xft serve`: hot-swap inference with dynamic batching across requests and languages.

One router holds the base model once; the app never touches it from the event loop. Every request is
validated here (body size, rows, text length, bodies.py) and handed to the `Batcher` (batcher.py), which runs
predictions in shared batches and adapter changes (admin.py) between them, all on one inference thread.
Who may change adapters, and from which folders, is security.py's (docs/security.md).

    GET    /healthz                 the batcher is running (never waits on the model)
    POST   /v1/predict              {"text", "language"} or {"inputs": [{"text", "language"}, ...]}
    GET    /v1/adapters             registered, loaded and pinned adapters, versions, hashes, stats, limits
                                    (package paths only for administrators, and only inside the adapter roots)
    PUT    /v1/adapters/{name}      {"path": "/abs/folder", "pin": true|false}: register, or a new version (admin)
    DELETE /v1/adapters/{name}      unregister and unload (admin)

Status codes: 4xx for every request the server refuses (with a JSON `detail`), 503 when it cannot take work now
(queue full, shutting down, an adapter's files failed to load), 500 only for a failure of the server itself.

Example::

    from xft_core.inference.app import create_app
    from xft_core.inference.router import Router
    app = create_app(Router.from_run("runs/reviews"), admin_token=token, adapter_roots=["runs/reviews"])
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from xft_core.inference.admin import Conflict, check_name, delete_adapter, describe, put_adapter
from xft_core.inference.batcher import Batcher, Busy
from xft_core.inference.bodies import (
    DEFAULT_MAX_BODY_BYTES,
    AdapterRequest,
    BodyLimit,
    PredictRequest,
    json_bytes,
    printable,
    validation_detail,
)
from xft_core.inference.protocol import RouterLike
from xft_core.inference.security import AdminAccess, AdminGate, Denied
from xft_core.version import __version__

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServerState", "create_app"]

log = logging.getLogger("xft.serve")


def create_app(
    router: RouterLike,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5,
    max_request_rows: int = 256,
    max_text_chars: int = 4096,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = 4096,
    admin_token: str | None = None,
    trust_loopback: bool = False,
    adapter_roots: Sequence[str | Path] = (),
    drain_seconds: float = 30.0,
) -> Any:
    """A FastAPI app serving `router`; see the module docstring for the routes and batcher.py for the batching.

    Adapter administration (PUT / DELETE) needs `admin_token` (sent as `Authorization: Bearer <token>`); without
    one it is open only with `trust_loopback` (set it only when the app listens on loopback: `xft serve` does),
    and only to loopback clients not behind a proxy. PUT loads only folders under `adapter_roots`."""
    access = AdminAccess(admin_token, trust_loopback=trust_loopback, roots=adapter_roots)
    limits = {
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "max_request_rows": max_request_rows,
        "max_text_chars": max_text_chars,
        "max_body_bytes": max_body_bytes,
        "max_queue": max_queue,
    }
    state = ServerState(router, access, limits, drain_seconds)
    app = FastAPI(title="xft serve", version=__version__, lifespan=_lifespan)
    app.state.server = state
    app.state.router, app.state.access, app.state.limits = router, access, limits
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(AdminGate, access=access)  # added last, so it runs first: before the body is read
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _refused)
    app.add_exception_handler(Exception, _crashed)
    app.get("/healthz")(healthz)
    app.post("/v1/predict")(predict)
    app.get("/v1/adapters")(list_adapters)
    app.put("/v1/adapters/{name}")(put)
    app.delete("/v1/adapters/{name}")(delete)
    return app


# ------------------------------------------------------------------------------------------------ state
@dataclass
class ServerState:
    """What every route needs: the router, who may administer it, the limits, and the batcher while the app's
    lifespan lasts (`app.state.server`)."""

    router: RouterLike
    access: AdminAccess
    limits: dict[str, Any]
    drain_seconds: float = 30.0
    running: Batcher | None = field(default=None, repr=False)

    def batcher(self) -> Batcher:
        if self.running is None or not self.running.alive:
            raise HTTPException(503, "inference loop is not running")
        return self.running

    async def control(self, description: str, call: Any) -> Any:
        """An adapter change, run between batches on the inference thread."""
        try:
            return await self.batcher().control(description, call)
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None

    def is_admin(self, request: Request) -> bool:
        try:
            return self.access.allowed(_headers_of(request), _client_of(request))
        except Denied as exc:
            raise _denied(exc) from None

    def require_admin(self, request: Request) -> None:  # AdminGate has checked already; this keeps routes safe alone
        try:
            self.access.check(_headers_of(request), _client_of(request))
        except Denied as exc:
            raise _denied(exc) from None


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state: ServerState = app.state.server
    limits = state.limits
    batcher = Batcher(state.router, max_batch=limits["max_batch"], max_wait_ms=limits["max_wait_ms"],
                      max_queue=limits["max_queue"])
    batcher.start()
    state.running = app.state.batcher = batcher
    try:
        yield
    finally:
        await batcher.stop(drain_seconds=state.drain_seconds)


def _state(request: Request) -> ServerState:
    return request.app.state.server


# ------------------------------------------------------------------------------------------------ routes
async def healthz(request: Request) -> Response:
    b = _state(request).batcher()
    return answer({"status": "ok", "queued": b.queue.qsize(), "batches": b.stats.batches})


async def predict(body: PredictRequest, request: Request) -> Response:
    from xft_core.inference.packages import AdapterLoadError

    state = _state(request)
    max_rows, max_chars = state.limits["max_request_rows"], state.limits["max_text_chars"]
    rows = body.rows()
    if len(rows) > max_rows:
        raise HTTPException(413, f"{len(rows)} inputs in one request; the limit is max_request_rows={max_rows}")
    for i, row in enumerate(rows):
        if len(row.text) > max_chars:
            where = "text" if body.inputs is None else f"inputs[{i}].text"
            raise HTTPException(413, f"{where} has {len(row.text)} characters; the limit is max_text_chars={max_chars}")
    try:
        outputs = await state.batcher().predict([r.text for r in rows], [r.language or "auto" for r in rows])
    except Busy as exc:
        raise HTTPException(503, str(exc)) from None
    except AdapterLoadError as exc:  # the server's files, not the client's request: details stay in the log
        log.error("an adapter failed to load while serving a request: %s", exc)
        raise HTTPException(503, "an adapter this request needs could not be loaded; the server's log has the "
                                 "details") from None
    except (ValueError, KeyError) as exc:
        raise HTTPException(422, f"cannot serve this request: {_message(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the model failed: logged, answered without internals
        log.error("inference failed", exc_info=exc)
        raise HTTPException(500, "inference failed (the server's log has the details)") from None
    return answer({"predictions": outputs})


async def list_adapters(request: Request) -> Response:
    state = _state(request)
    show = state.access.shown if state.is_admin(request) else (lambda folder: None)
    try:  # run on the inference thread: consistent with adapter changes
        info = await state.batcher().inspect(lambda: describe(state.router, show_path=show))
    except Busy as exc:
        raise HTTPException(503, str(exc)) from None
    info["server_stats"] = state.batcher().stats.as_dict()
    info["limits"] = state.limits
    return answer(info)


async def put(name: str, body: AdapterRequest, request: Request) -> Response:
    from xft_core.adapters import AdapterError

    state = _state(request)
    state.require_admin(request)
    try:
        check_name(name)
        folder = state.access.resolve(body.path)  # refused outside the roots, whether the path exists or not
    except Denied as exc:
        raise _denied(exc) from None
    except AdapterError as exc:
        raise HTTPException(400, str(exc)) from None
    try:
        return answer(await state.control(f"put {name}", lambda: put_adapter(state.router, name, folder, body.pin)))
    except (AdapterError, FileNotFoundError, NotADirectoryError, ValueError) as exc:  # AdapterLoadError too
        raise HTTPException(400, f"cannot load adapter '{name}' from {folder}: {_message(exc)}") from None


async def delete(name: str, request: Request) -> Response:
    state = _state(request)
    state.require_admin(request)
    try:
        return answer(await state.control(f"delete {name}", lambda: delete_adapter(state.router, name)))
    except KeyError:
        raise HTTPException(404, f"no adapter named '{printable(name, 80)}' is registered") from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None


# ------------------------------------------------------------------------------------------------ answers
def answer(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(content), status_code=status, headers=headers, media_type="application/json")


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    return answer(validation_detail(exc.errors()), 422)


async def _refused(request: Request, exc: StarletteHTTPException) -> Response:
    return answer({"detail": printable(exc.detail, 2000)}, exc.status_code, getattr(exc, "headers", None))


async def _crashed(request: Request, exc: Exception) -> Response:  # a bug of ours: logged, never shown
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return answer({"detail": "internal server error (the server's log has the details)"}, 500)


def _denied(exc: Denied) -> HTTPException:
    return HTTPException(exc.status, exc.message, headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)


def _client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def _headers_of(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
