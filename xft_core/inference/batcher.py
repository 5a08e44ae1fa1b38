"""Dynamic batching for `xft serve`: one queue, one batcher task, one inference thread.

* Every request is put on one asyncio queue and awaits a future.
* The batcher task drains the queue: it collects predict requests until `max_batch` rows or `max_wait_ms`
  have passed, runs ONE `router.predict` over all their rows (languages mixed) on the inference thread, and
  hands each request its slice.
* Control operations (adapter changes) go through the same queue and run on the same thread *between*
  batches, so a request is answered either wholly by the old adapter or wholly by the new one, never by a
  half-loaded one, and none fails because of a swap.
* `stop` drains: new work is refused (`ShuttingDown`), what is queued or running is answered, and only after
  `drain_seconds` is anything left failed with `ShuttingDown`; no request is ever left waiting forever.

Example::

    batcher = Batcher(router, max_batch=64, max_wait_ms=5, max_queue=4096)
    batcher.start()  # inside a running event loop
    predictions = await batcher.predict(["Das ist toll"], ["de"])
    version = await batcher.control("put de", lambda: router.replace("de", folder))
    await batcher.stop(drain_seconds=30)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xft_core.inference.protocol import RouterLike

SHUTTING_DOWN = "server is shutting down"


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


_Item = _Predict | _Control


@dataclass
class ServerStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    batch_rows_max: int = 0
    control_operations: int = 0
    rejected: int = 0  # the queue was full
    failed: int = 0  # requests whose own rows made the router fail
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
    """The server cannot take the request now (its queue is full); retry later (HTTP 503)."""


class ShuttingDown(Busy):
    """The server is stopping (or its inference loop is not running): nothing more is taken."""


class Batcher:
    """Collects predict requests into batches and runs them, and control operations between them,
    on one inference thread. Create and start it inside a running event loop."""

    def __init__(self, router: RouterLike, *, max_batch: int, max_wait_ms: float, max_queue: int):
        self.router = router
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max(1, int(max_queue)))
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xft-inference")
        self.stats = ServerStats()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.closing = False
        self._pending: set[asyncio.Future] = set()  # every accepted request not yet answered, queued or running

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="xft-batcher")

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Refuse new work, answer what is queued and running (up to `drain_seconds`), then end the loop; anything
        still waiting then gets ShuttingDown."""
        self.closing = True
        deadline = time.monotonic() + max(0.0, drain_seconds)
        while self.alive and self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)  # its cancellation (or failure) ends here
        while not self.queue.empty():
            self.queue.get_nowait()
        for future in list(self._pending):
            if not future.done():
                future.set_exception(ShuttingDown(SHUTTING_DOWN))
        # a forward still running finishes on its thread; wait for it there, not on the event loop
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    # ---------------------------------------------------------------------------------- submitting
    async def predict(self, texts: list[str], languages: list[str]) -> list[dict[str, Any]]:
        """Predictions for `texts`, computed in a batch shared with whatever else is queued."""
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
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _check_open(self) -> None:
        if self.closing:
            raise ShuttingDown(SHUTTING_DOWN)
        if not self.alive:
            raise ShuttingDown("inference loop is not running" + (f" ({self.error!r})" if self.error else ""))

    def _put(self, item: _Item) -> None:
        self._check_open()
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise Busy(f"server busy: {self.queue.maxsize} requests already queued; retry later") from None
        self._pending.add(item.future)
        item.future.add_done_callback(self._pending.discard)

    # ---------------------------------------------------------------------------------- the loop
    async def _run(self) -> None:
        carry: _Item | None = None
        try:
            while True:
                item = carry if carry is not None else await self.queue.get()
                carry = None
                if isinstance(item, _Control):
                    await self._control(item)
                    continue
                batch, carry = await self._collect(item)
                await self._predict(batch)
        except asyncio.CancelledError:  # stop() answers whatever is still pending
            raise
        except BaseException as exc:  # pragma: no cover - a bug in the loop itself; make /healthz say so
            self.error = exc
            for future in list(self._pending):
                if not future.done():
                    future.set_exception(ShuttingDown(f"inference loop failed: {exc!r}"))
            raise

    async def _collect(self, first: _Predict) -> tuple[list[_Predict], _Item | None]:
        """`first` and the requests queued after it, up to `max_batch` rows or `max_wait`; returns the batch and
        the item that closed it (a control operation, or a request that would overflow it), if any."""
        loop = asyncio.get_running_loop()
        batch, rows = [first], len(first.texts)
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if isinstance(item, _Control) or rows + len(item.texts) > self.max_batch:
                return batch, item  # a control op closes the batch; an overflowing request opens the next one
            batch.append(item)
            rows += len(item.texts)
        return batch, None

    async def _control(self, item: _Control) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, item.call)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is the caller's answer, not the loop's end
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            self.stats.control_operations += 1
            if not item.future.done():
                item.future.set_result(result)

    async def _predict(self, batch: list[_Predict]) -> None:
        batch = [b for b in batch if not b.future.done()]  # the client went away while it waited
        if not batch:
            return
        texts = [t for b in batch for t in b.texts]
        languages = [lang for b in batch for lang in b.languages]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self._forward, texts, languages)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is the requests' answer, not the loop's end
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

    def _forward(self, texts: list[str], languages: list[str]) -> list[dict[str, Any]]:
        outputs = self.router.predict(texts, languages)
        if len(outputs) != len(texts):
            raise RuntimeError(f"router returned {len(outputs)} predictions for {len(texts)} texts")
        return [{k: v for k, v in output.items() if k != "logits"} for output in outputs]  # raw scores stay internal
