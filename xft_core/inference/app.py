"""The HTTP app of `xft serve`: hot-swap inference with dynamic batching across requests and languages.

One router holds the base model once; the app never touches it from the event loop. Every request is
validated here (body size, rows, text length) and handed to the `Batcher` (batcher.py), which runs
predictions in shared batches and adapter changes (admin.py) between them, all on one inference thread.

    GET    /healthz                 the batcher is running (never waits on the model)
    POST   /v1/predict              {"text", "language"} or {"inputs": [{"text", "language"}, ...]}
    GET    /v1/adapters             registered, loaded and pinned adapters, versions, stats, limits
    PUT    /v1/adapters/{name}      {"path": "/abs/folder", "pin": true|false}: register, or a new version
    DELETE /v1/adapters/{name}      unregister (and unload)

Example::

    from xft_core.inference.app import create_app
    from xft_core.inference.router import Router
    app = create_app(Router.from_run("runs/reviews"), max_batch=64, max_wait_ms=5)
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xft_core.inference.admin import delete_adapter, describe, put_adapter
from xft_core.inference.batcher import Batcher, Busy
from xft_core.inference.protocol import RouterLike
from xft_core.version import __version__

DEFAULT_MAX_BODY_BYTES = 1_000_000


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, whether declared by content-length or
    streamed in chunks. The body is read here in full (it is small by then) and replayed to the app."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    return await self._reject(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._reject(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _reject(self, send: Any) -> None:
        detail = f"request body larger than the server's limit of {self.limit} bytes (max_body_bytes)"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------ request bodies
class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    language: str | None = Field(default=None, description="language code, 'auto' (detect) or null (detect)")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    language: str | None = None
    inputs: list[Row] | None = None

    @model_validator(mode="after")
    def one_form(self) -> PredictRequest:
        if (self.text is None) == (self.inputs is None):
            raise ValueError("give either 'text' (one row) or 'inputs' (a list of {text, language}), not both or neither")
        if self.inputs is not None and self.language is not None:
            raise ValueError("'language' goes inside each item of 'inputs'")
        if self.inputs is not None and not self.inputs:
            raise ValueError("'inputs' is empty")
        return self

    def rows(self) -> list[Row]:
        return [Row(text=self.text, language=self.language)] if self.inputs is None else self.inputs


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    pin: bool | None = None  # true pins, false unpins, omitted keeps the current state


# ------------------------------------------------------------------------------------------- the app
def create_app(
    router: RouterLike,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5,
    max_request_rows: int = 256,
    max_text_chars: int = 4096,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = 4096,
) -> Any:
    """A FastAPI app serving `router`; see the module docstring for the routes and batcher.py for the batching."""
    from fastapi import FastAPI, HTTPException

    from xft_core.adapters import AdapterError

    running: dict[str, Batcher] = {}  # the batcher, while the app's lifespan lasts

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = Batcher(router, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
        batcher.start()
        running["batcher"] = app.state.batcher = batcher
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="xft serve", version=__version__, lifespan=lifespan)
    app.state.router = router
    app.state.limits = {
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "max_request_rows": max_request_rows,
        "max_text_chars": max_text_chars,
        "max_body_bytes": max_body_bytes,
        "max_queue": max_queue,
    }
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    def batcher() -> Batcher:
        b = running.get("batcher")
        if b is None or not b.alive:
            raise HTTPException(503, "inference loop is not running")
        return b

    @app.get("/healthz")
    async def healthz():
        b = batcher()
        return {"status": "ok", "queued": b.queue.qsize(), "batches": b.stats.batches}

    @app.post("/v1/predict")
    async def predict(body: PredictRequest):
        rows = body.rows()
        if len(rows) > max_request_rows:
            raise HTTPException(413, f"{len(rows)} inputs in one request; the limit is max_request_rows={max_request_rows}")
        for i, row in enumerate(rows):
            if len(row.text) > max_text_chars:
                where = "text" if body.inputs is None else f"inputs[{i}].text"
                raise HTTPException(413, f"{where} has {len(row.text)} characters; the limit is max_text_chars={max_text_chars}")
        try:
            outputs = await batcher().predict([r.text for r in rows], [r.language or "auto" for r in rows])
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        except (ValueError, KeyError) as exc:
            raise HTTPException(422, f"cannot serve this request: {_message(exc)}") from None
        except RuntimeError as exc:
            raise HTTPException(500, f"inference failed: {_message(exc)}") from None
        return {"predictions": outputs}

    @app.get("/v1/adapters")
    async def adapters():
        b = batcher()
        info = await b.inspect(lambda: describe(router))  # serialised with adapter changes: a consistent picture
        info["server_stats"] = b.stats.as_dict()
        info["limits"] = app.state.limits
        return info

    @app.put("/v1/adapters/{name}")
    async def put(name: str, body: AdapterRequest):
        folder = Path(body.path).expanduser()
        if not folder.is_absolute():
            raise HTTPException(400, f"path must be absolute on the server, got {body.path!r}")
        try:
            return await batcher().control(f"put {name}", lambda: put_adapter(router, name, folder, body.pin))
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        except (AdapterError, FileNotFoundError, NotADirectoryError, ValueError) as exc:  # ValueError: e.g. a refused name
            raise HTTPException(400, f"cannot load adapter '{name}' from {folder}: {_message(exc)}") from None

    @app.delete("/v1/adapters/{name}")
    async def delete(name: str):
        try:
            return await batcher().control(f"delete {name}", lambda: delete_adapter(router, name))
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        except KeyError:
            raise HTTPException(404, f"no adapter named '{name}' is registered") from None

    return app


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
