"""`xft serve`: hot-swap inference over HTTP, with dynamic batching across requests and languages.

One `Router` holds the base model once. The app never touches it from the event loop:

* Every request is validated (body size, rows, text length), put on one asyncio queue, and awaits a
  future.
* One batcher task drains the queue: it collects predict requests until `max_batch` rows or
  `max_wait_ms` have passed, runs ONE `router.predict` over all their rows (languages mixed) on a
  single inference thread, and hands each request its slice.
* Adapter changes (`PUT`/`DELETE /v1/adapters/{name}`) go through the same queue as control operations
  and run on the same inference thread *between* batches, so a request is answered either wholly by the
  old adapter or wholly by the new one, never by a half-loaded one, and none fails because of a swap.

Example::

    from xft_core.inference.router import Router
    from xft_core.inference.server import create_app
    app = create_app(Router.from_run("runs/reviews"), max_batch=64, max_wait_ms=5)
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""


import argparse
import asyncio
import concurrent.futures
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BASE = "__base__"
DEFAULT_MAX_BODY_BYTES = 1_000_000


# ------------------------------------------------------------------------------------- queue items
@dataclass
class _Predict:
    texts: list[str]
    languages: list[str]
    future: asyncio.Future


@dataclass
class _Control:
    description: str
    call: Callable[[], Any]
    future: asyncio.Future


@dataclass
class ServerStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    batch_rows_max: int = 0
    control_operations: int = 0
    rejected: int = 0
    failed: int = 0
    inference_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rows": self.rows,
            "batches": self.batches,
            "mean_batch_rows": round(self.rows / self.batches, 3) if self.batches else 0.0,
            "max_batch_rows": self.batch_rows_max,
            "control_operations": self.control_operations,
            "rejected": self.rejected,
            "failed": self.failed,
            "inference_seconds": round(self.inference_seconds, 4),
        }


class Busy(Exception):
    """The request queue is full."""


# ------------------------------------------------------------------------------------------ batcher
class Batcher:
    """Collects predict requests into batches and runs them, and control operations between them,
    on one inference thread. Create and start it inside a running event loop."""

    def __init__(self, router: Any, *, max_batch: int, max_wait_ms: float, max_queue: int):
        self.router = router
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max(1, int(max_queue)))
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xft-inference")
        self.stats = ServerStats()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="xft-batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("server is shutting down"))
        self.executor.shutdown(wait=True, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    # ---------------------------------------------------------------------------------- submitting
    def _put(self, item: Any) -> None:
        if not self.alive:
            raise RuntimeError(f"inference loop is not running ({self.error!r})" if self.error else "inference loop is not running")
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise Busy(f"server busy: {self.queue.maxsize} requests already queued; retry later") from None

    async def predict(self, texts: list[str], languages: list[str]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        self._put(_Predict(texts, languages, future))
        return await future

    async def control(self, description: str, call: Callable[[], Any]) -> Any:
        """Run `call()` on the inference thread between two batches; returns its result."""
        future = asyncio.get_running_loop().create_future()
        self._put(_Control(description, call, future))
        return await future

    async def inspect(self, call: Callable[[], Any]) -> Any:
        """Run a read-only `call()` on the inference thread (waits for the current batch)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    # ---------------------------------------------------------------------------------- the loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carry: Any = None
        try:
            while True:
                item = carry if carry is not None else await self.queue.get()
                carry = None
                if isinstance(item, _Control):
                    await self._control(item)
                    continue
                batch, rows = [item], len(item.texts)
                deadline = loop.time() + self.max_wait
                while rows < self.max_batch:
                    try:
                        nxt = self.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            nxt = await asyncio.wait_for(self.queue.get(), remaining)
                        except asyncio.TimeoutError:
                            break
                    if isinstance(nxt, _Control) or rows + len(nxt.texts) > self.max_batch:
                        carry = nxt  # a control op closes the batch; an overflowing request opens the next one
                        break
                    batch.append(nxt)
                    rows += len(nxt.texts)
                await self._predict(batch)
        except asyncio.CancelledError:
            if carry is not None and not carry.future.done():
                carry.future.set_exception(RuntimeError("server is shutting down"))
            raise
        except BaseException as exc:  # pragma: no cover - a bug in the loop itself; make /healthz say so
            self.error = exc
            raise

    async def _control(self, item: _Control) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, item.call)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            self.stats.control_operations += 1
            if not item.future.done():
                item.future.set_result(result)

    async def _predict(self, batch: list[_Predict]) -> None:
        loop = asyncio.get_running_loop()
        batch = [b for b in batch if not b.future.done()]  # the client went away while it waited
        if not batch:
            return
        texts = [t for b in batch for t in b.texts]
        languages = [lang for b in batch for lang in b.languages]
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.executor, self._forward, texts, languages)
        except Exception as exc:
            if len(batch) == 1:
                self.stats.failed += 1
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            # one request's rows broke the shared batch: answer every request on its own, so only it fails
            for request in batch:
                await self._predict([request])
            return
        self.stats.inference_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += len(texts)
        self.stats.requests += len(batch)
        self.stats.batch_rows_max = max(self.stats.batch_rows_max, len(texts))
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():
                request.future.set_result(outputs[start:end])
            start = end

    def _forward(self, texts: list[str], languages: list[str]) -> list[dict]:
        outputs = self.router.predict(texts, languages)
        if len(outputs) != len(texts):
            raise RuntimeError(f"router returned {len(outputs)} predictions for {len(texts)} texts")
        return [_jsonable(o) for o in outputs]


def _jsonable(prediction: dict) -> dict:
    out = {k: v for k, v in prediction.items() if k != "logits"}
    if out.get("adapter") is None:
        out["adapter"] = BASE
    return out


# ------------------------------------------------------------------------------- router helpers
def describe(router: Any) -> dict[str, Any]:
    """Registered adapters with their folders, versions, languages and pinning; loaded ones in LRU order."""
    loaded = list(router.loaded())
    registered = _registered(router)
    pinned = set(_pinned(router))
    adapters = {}
    for name in sorted(registered):
        folder = registered[name]
        adapters[name] = {
            "path": str(folder) if folder is not None else None,
            "version": router.adapter_version(name),
            "languages": _languages(router, name, folder),
            "loaded": name in loaded,
            "pinned": name in pinned,
        }
    stats = getattr(router, "stats", {})
    stats = stats() if callable(stats) else stats
    return {
        "registered": sorted(registered),
        "loaded": loaded,
        "pinned": sorted(pinned),
        "capacity": getattr(router, "capacity", None),
        "fallback": getattr(router, "fallback", None),
        "adapters": adapters,
        "router_stats": _plain(stats),
    }


def _registered(router: Any) -> dict[str, Any]:
    for attribute in ("registered", "adapters", "folders"):
        value = getattr(router, attribute, None)
        if value is None:
            continue
        value = value() if callable(value) else value
        if isinstance(value, dict):
            return {str(k): getattr(v, "folder", v) for k, v in value.items()}
        return {str(k): None for k in value}
    return {name: None for name in router.loaded()}


def _pinned(router: Any) -> list[str]:
    value = getattr(router, "pinned", [])
    value = value() if callable(value) else value
    return [str(v) for v in value]


def _languages(router: Any, name: str, folder: Any) -> list[str]:
    getter = getattr(router, "adapter_languages", None)
    if callable(getter):
        return list(getter(name))
    if folder is not None:
        try:
            return list(json.loads((Path(folder) / "xft.json").read_text(encoding="utf-8")).get("languages", []))
        except (OSError, ValueError):
            return []
    return []


def _plain(value: Any) -> Any:
    """Something json can write, from dataclasses, mappings, sets and the like."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    return str(value)


def put_adapter(router: Any, name: str, folder: Path, pin: bool | None = None) -> dict[str, Any]:
    """Load `folder` as adapter `name`, fully, now: a known name gets a new version (the router loads it beside
    the old one and switches over), a new name is registered. `pin`: True pins, False unpins, None keeps."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"adapter folder {folder} does not exist (on the server's file system)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the adapter package's folder (the one holding xft.json)")
    registered = _registered(router)
    known = name in registered
    if known:
        previous = registered[name]
        router.replace(name, folder)
        if name not in router.loaded():  # it was evicted or never loaded: load the new version now, not on a request
            try:
                router.load(name)
            except Exception:
                if previous is not None:
                    router.replace(name, previous)  # keep serving what worked (its version counts on)
                raise
    else:
        try:
            router.register(name, folder, pin=bool(pin))
            router.load(name)
        except Exception:
            if name in _registered(router):
                _forget(router, name)  # a failed PUT leaves nothing behind
            raise
    if pin:
        router.pin(name)
    elif pin is False and name in _pinned(router):
        router.unpin(name)
    return {
        "name": name,
        "version": router.adapter_version(name),
        "replaced": known,
        "pinned": name in _pinned(router),
        "languages": _languages(router, name, folder),
        "path": str(folder),
    }


def delete_adapter(router: Any, name: str) -> dict[str, Any]:
    if name not in _registered(router):
        raise KeyError(name)
    version = router.adapter_version(name)
    _forget(router, name)
    return {"name": name, "deleted": True, "version": version}


def _forget(router: Any, name: str) -> None:
    unregister = getattr(router, "unregister", None)
    if callable(unregister):
        unregister(name)  # unloads too, pinned or not
        return
    if name in router.loaded():
        if name in _pinned(router):
            router.unpin(name)
        router.unload(name)


# ------------------------------------------------------------------------------------------ the app
class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, whether declared by content-length or
    streamed in chunks. The body is read here in full (it is small by then) and replayed to the app."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope, receive, send):
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

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than the server's limit of {self.limit} bytes (max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(
    router: Any,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5,
    max_request_rows: int = 256,
    max_text_chars: int = 4096,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = 4096,
) -> Any:
    """A FastAPI app serving `router`; see the module docstring for how requests are batched."""
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, ConfigDict, Field, model_validator

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
        def one_form(self):
            if (self.text is None) == (self.inputs is None):
                raise ValueError("give either 'text' (one row) or 'inputs' (a list of {text, language}), not both or neither")
            if self.inputs is not None and self.language is not None:
                raise ValueError("'language' goes inside each item of 'inputs'")
            if self.inputs is not None and not self.inputs:
                raise ValueError("'inputs' is empty")
            return self

    class AdapterRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        pin: bool | None = None  # true pins, false unpins, omitted keeps the current state

    batcher_box: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app):
        batcher = Batcher(router, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
        batcher.start()
        batcher_box["b"] = batcher
        app.state.batcher = batcher
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="xft serve", version=_version(), lifespan=lifespan)
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
        b = batcher_box.get("b")
        if b is None or not b.alive:
            raise HTTPException(503, "inference loop is not running")
        return b

    @app.get("/healthz")
    async def healthz():
        b = batcher_box.get("b")
        if b is None or not b.alive:
            raise HTTPException(503, "inference loop is not running")
        return {"status": "ok", "queued": b.queue.qsize(), "batches": b.stats.batches}  # never waits on the model

    @app.post("/v1/predict")
    async def predict(body: PredictRequest):
        rows = [Row(text=body.text, language=body.language)] if body.inputs is None else body.inputs
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
        from xft_core.adapters import AdapterError

        folder = Path(body.path).expanduser()
        if not folder.is_absolute():
            raise HTTPException(400, f"path must be absolute on the server, got {body.path!r}")
        try:
            return await batcher().control(f"put {name}", lambda: put_adapter(router, name, folder, body.pin))
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        except (AdapterError, FileNotFoundError, NotADirectoryError) as exc:
            raise HTTPException(400, f"cannot load adapter '{name}' from {folder}: {_message(exc)}") from None
        except ValueError as exc:  # e.g. a router refusing a name, or a package for another task
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


def _version() -> str:
    from xft_core import __version__

    return __version__


# ------------------------------------------------------------------------------------------ the CLI
def build_router(target: str | Path, *, capacity: int = 8, fallback: str | None = None, device: str | None = None,
                 precision: str = "no") -> Any:
    """A Router over a run folder (its adapters/*), a folder of adapter packages, or one package."""
    from xft_core.inference.router import Router

    return Router.from_run(Path(target).expanduser(), capacity=capacity, fallback=fallback, device=device, precision=precision)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    router = build_router(args.target, capacity=args.capacity, fallback=args.fallback, device=args.device, precision=args.precision)
    app = create_app(
        router,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_request_rows=args.max_request_rows,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve adapters over HTTP with hot-swap and dynamic batching",
        description=(
            "Serve a run's per-language adapters over HTTP: POST /v1/predict, GET/PUT/DELETE /v1/adapters, GET /healthz. "
            "Concurrent requests are batched together across languages; adapters load, swap and unload at run time."
        ),
    )
    p.add_argument("target", metavar="RUN_OR_ADAPTERS", help="a run folder (runs/<name>), its adapters/ folder, or one adapter package")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--capacity", type=int, default=8, help="adapters held in memory at once (LRU eviction; pinned ones stay)")
    p.add_argument("--precision", default="no", choices=["no", "auto", "bf16", "fp16"],
                   help="forward precision: no (exact, default), auto (bf16 where supported: faster on CPUs with native bf16)")
    p.add_argument("--fallback", default=None, metavar="NAME", help="adapter for languages without their own (default: the base model)")
    p.add_argument("--device", default=None, help="torch device for the model, e.g. cuda:0 (default: the router's choice)")
    p.add_argument("--max-batch", type=int, default=64, help="most rows run in one forward pass across requests")
    p.add_argument("--max-wait-ms", type=float, default=5, help="longest a request waits for others to share its batch")
    p.add_argument("--max-request-rows", type=int, default=256, help="most inputs in one request (413 above)")
    p.add_argument("--max-text-chars", type=int, default=4096, help="longest text accepted (413 above)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="largest request body (413 above)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False, help="log every request")
    p.set_defaults(func=cmd_serve)
