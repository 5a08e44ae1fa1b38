"""The server's own logic against a model-free `RouterLike`: batching, control operations between batches,
failures confined to their request, and adapter management (describe / put / delete).

Nothing here depends on timing: a batch closes because it is full or because a control operation arrived,
never because a deadline passed (`max_wait_ms` is a minute), and a running batch is held open with an event.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from xft_core.inference.admin import delete_adapter, describe, put_adapter
from xft_core.inference.batcher import Batcher, Busy
from xft_core.inference.protocol import RouterLike

NEVER_MS = 60_000  # batches close by size or by a control operation, not by waiting


class Counters:
    def __init__(self):
        self.forwards = 0

    def as_dict(self):
        return {"forwards": self.forwards}


class GatedRouter:
    """A `RouterLike` without a model. A prediction echoes its text and names the version of its language's
    adapter. `predict` sets `entered`, then waits for `gate`: a test clears the gate to hold a batch on the
    inference thread while it queues more work behind it. Every call is logged with its thread."""

    def __init__(self, adapters=("en", "de"), *, capacity=4, fallback=None):
        self.capacity = capacity
        self.fallback = fallback
        self.stats = Counters()
        self.folders = {name: Path(f"/adapters/{name}") for name in adapters}
        self.versions = {name: 1 for name in adapters}
        self.languages = {name: [name] for name in adapters}
        self._loaded = list(adapters)
        self._pinned: set[str] = set()
        self.refuse_load: set[str] = set()  # names whose load raises
        self.log: list[tuple] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def _record(self, *call):
        self.log.append(call)
        self.threads.add(threading.get_ident())

    def calls(self, kind):
        return [call[1] for call in self.log if call[0] == kind]

    def predict(self, texts, languages=None):
        self._record("predict", list(texts))
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise RuntimeError("test gate never opened")
        if "boom" in texts:
            raise ValueError("cannot score 'boom'")
        self.stats.forwards += 1
        return [{"text": text, "language": language, "adapter": language if language in self.folders else "__base__",
                 "adapter_version": self.versions.get(language), "logits": [0.0, 1.0]}
                for text, language in zip(texts, languages)]

    def register(self, name, folder, *, pin=False):
        self._record("register", name)
        self.folders[name], self.versions[name], self.languages[name] = Path(folder), 1, [name]
        if pin:
            self.pin(name)

    def unregister(self, name):
        self._record("unregister", name)
        del self.folders[name], self.versions[name], self.languages[name]
        self._pinned.discard(name)
        if name in self._loaded:
            self._loaded.remove(name)

    def registered(self):
        return dict(self.folders)

    def replace(self, name, folder, *, load=False):
        self._record("replace", name, Path(folder))
        if load and name in self.refuse_load:  # like the real router: a failed load changes nothing
            raise ValueError(f"{folder}: adapter was trained on a different base model")
        self.folders[name] = Path(folder)
        self.versions[name] += 1
        if load and name not in self._loaded:
            self._loaded.append(name)
        return self.versions[name]

    def adapter_version(self, name):
        return self.versions[name]

    def adapter_hash(self, name):
        return f"{abs(hash((name, str(self.folders[name])))):012x}"[:12]

    def adapter_languages(self, name):
        return self.languages[name]

    def load(self, name):
        self._record("load", name)
        if name in self.refuse_load:
            raise ValueError(f"{self.folders[name]}: adapter was trained on a different base model")
        if name in self._loaded:
            self._loaded.remove(name)
        self._loaded.append(name)

    def loaded(self):
        return list(self._loaded)

    def pin(self, name):
        self.load(name)
        self._pinned.add(name)

    def unpin(self, name):
        self._pinned.discard(name)

    def pinned(self):
        return sorted(self._pinned)


def run(router, body, *, max_batch, max_queue=64):
    """`body(batcher)` in a fresh event loop, with a started batcher that is always stopped."""

    async def main():
        batcher = Batcher(router, max_batch=max_batch, max_wait_ms=NEVER_MS, max_queue=max_queue)
        batcher.start()
        try:
            return await asyncio.wait_for(body(batcher), timeout=30)  # a hang fails the test instead of the run
        finally:
            router.gate.set()
            await batcher.stop()

    return asyncio.run(main())


def test_the_fakes_implement_the_protocol():
    assert isinstance(GatedRouter(), RouterLike)


def test_concurrent_requests_share_one_predict_call_and_each_gets_its_own_slice():
    router = GatedRouter()
    requests = [(["a1"], ["en"]), (["b1", "b2"], ["de", "en"]), (["c1", "c2", "c3"], ["xx", "de", "en"])]

    async def body(batcher):
        answers = await asyncio.gather(*(batcher.predict(texts, languages) for texts, languages in requests))
        return answers, batcher.stats.as_dict()

    answers, stats = run(router, body, max_batch=6)
    (only,) = router.calls("predict")
    assert sorted(only) == ["a1", "b1", "b2", "c1", "c2", "c3"]
    for (texts, languages), answer in zip(requests, answers):
        assert [p["text"] for p in answer] == texts
        assert [(p["language"], p["adapter"]) for p in answer] == [(lang, lang if lang in ("en", "de") else "__base__")
                                                                   for lang in languages]
        assert all("logits" not in p for p in answer)
    assert (stats["batches"], stats["requests"], stats["rows"], stats["max_batch_rows"]) == (1, 3, 6, 6)


def test_a_put_arriving_during_a_batch_runs_after_it_and_before_the_next(tmp_path):
    router = GatedRouter()
    (tmp_path / "de-v2").mkdir()
    router.gate.clear()

    async def body(batcher):
        held = [asyncio.create_task(batcher.predict([text], ["de"])) for text in ("held1", "held2")]
        assert await asyncio.to_thread(router.entered.wait, 30), "the first batch never reached the router"
        before = asyncio.create_task(batcher.predict(["before"], ["de"]))
        put = asyncio.create_task(batcher.control("put de", lambda: put_adapter(router, "de", tmp_path / "de-v2")))
        after = [asyncio.create_task(batcher.predict([text], ["de"])) for text in ("after1", "after2")]
        await asyncio.sleep(0)  # one loop turn: each task puts its item on the queue, in order
        assert batcher.queue.qsize() == 4
        router.gate.set()
        return await asyncio.gather(*held), await before, await put, await asyncio.gather(*after)

    held, before, put, after = run(router, body, max_batch=2)
    # the control operation closed the batch that 'before' opened; the swap ran alone between two batches
    kinds = [(call[0], call[1]) for call in router.log]
    assert kinds == [("predict", ["held1", "held2"]), ("predict", ["before"]), ("replace", "de"),
                     ("predict", ["after1", "after2"])]
    assert [p[0]["adapter_version"] for p in held] + [before[0]["adapter_version"]] == [1, 1, 1]
    assert [p[0]["adapter_version"] for p in after] == [2, 2]
    assert (put["version"], put["replaced"]) == (2, True)
    assert len(router.threads) == 1 and threading.get_ident() not in router.threads, "one inference thread, not the loop's"


def test_a_failing_request_inside_a_shared_batch_fails_alone():
    router = GatedRouter()

    async def body(batcher):
        answers = await asyncio.gather(*(batcher.predict([text], ["en"]) for text in ("fine1", "boom", "fine2")),
                                       return_exceptions=True)
        return answers, batcher.stats.as_dict()

    (fine1, boom, fine2), stats = run(router, body, max_batch=3)
    assert [p["text"] for p in fine1] == ["fine1"] and [p["text"] for p in fine2] == ["fine2"]
    assert isinstance(boom, ValueError) and "boom" in str(boom)
    calls = router.calls("predict")
    assert sorted(calls[0]) == ["boom", "fine1", "fine2"], "first the shared batch"
    assert sorted(calls[1:]) == [["boom"], ["fine1"], ["fine2"]], "then each request on its own"
    assert (stats["failed"], stats["requests"]) == (1, 2)


def test_a_failing_control_operation_fails_its_caller_only():
    router = GatedRouter()

    async def body(batcher):
        with pytest.raises(KeyError):
            await batcher.control("delete fr", lambda: delete_adapter(router, "fr"))
        return await batcher.predict(["still"], ["en"]), batcher.stats.as_dict()

    answer, stats = run(router, body, max_batch=1)
    assert answer[0]["text"] == "still" and stats["control_operations"] == 0


def test_a_full_queue_refuses_at_once():
    router = GatedRouter()
    router.gate.clear()

    async def body(batcher):
        running = asyncio.create_task(batcher.predict(["running"], ["en"]))
        assert await asyncio.to_thread(router.entered.wait, 30)
        queued = asyncio.create_task(batcher.predict(["queued"], ["en"]))
        await asyncio.sleep(0)  # one loop turn: the task puts its item on the queue
        with pytest.raises(Busy, match="1 requests already queued"):
            await batcher.predict(["refused"], ["en"])
        router.gate.set()
        return await running, await queued, batcher.stats.as_dict()

    running, queued, stats = run(router, body, max_batch=1, max_queue=1)
    assert (running[0]["text"], queued[0]["text"], stats["rejected"]) == ("running", "queued", 1)


# ----------------------------------------------------------------------------------------- admin
def test_describe_reports_what_the_protocol_says():
    router = GatedRouter(("en", "de", "fr"), capacity=3, fallback="en")
    router.languages["fr"] = ["fr", "wa"]
    router.replace("de", Path("/adapters/de-v2"))
    router._loaded, router._pinned = ["en", "de"], {"en"}  # least recently used first
    router.stats.forwards = 7

    assert describe(router) == {
        "registered": ["de", "en", "fr"],
        "loaded": ["en", "de"],
        "pinned": ["en"],
        "capacity": 3,
        "fallback": "en",
        "adapters": {
            "de": {"path": "/adapters/de-v2", "version": 2, "hash": router.adapter_hash("de"), "languages": ["de"],
                   "loaded": True, "pinned": False},
            "en": {"path": "/adapters/en", "version": 1, "hash": router.adapter_hash("en"), "languages": ["en"],
                   "loaded": True, "pinned": True},
            "fr": {"path": "/adapters/fr", "version": 1, "hash": router.adapter_hash("fr"), "languages": ["fr", "wa"],
                   "loaded": False, "pinned": False},
        },
        "router_stats": {"forwards": 7},
    }


def test_put_registers_loads_and_pins_a_new_adapter(tmp_path):
    router = GatedRouter()
    (tmp_path / "fr").mkdir()

    result = put_adapter(router, "fr", tmp_path / "fr", pin=True)

    assert result == {"name": "fr", "version": 1, "hash": router.adapter_hash("fr"), "replaced": False, "pinned": True,
                      "languages": ["fr"], "path": str(tmp_path / "fr")}
    assert router.loaded()[-1] == "fr" and router.pinned() == ["fr"]


def test_put_of_a_known_adapter_that_is_not_loaded_loads_its_new_version_now(tmp_path):
    router = GatedRouter()
    router._loaded, router._pinned = ["en"], {"de"}
    (tmp_path / "de-v2").mkdir()

    result = put_adapter(router, "de", tmp_path / "de-v2", pin=False)

    assert (result["version"], result["replaced"], result["pinned"]) == (2, True, False)
    assert "de" in router.loaded() and router.registered()["de"] == tmp_path / "de-v2"


def test_a_put_that_fails_to_load_leaves_the_router_as_it_was(tmp_path):
    router = GatedRouter()
    router._loaded.remove("de")
    for name in ("de-v2", "it"):
        (tmp_path / name).mkdir()
    router.refuse_load = {"de", "it"}

    with pytest.raises(ValueError, match="different base model"):
        put_adapter(router, "de", tmp_path / "de-v2")
    assert router.registered()["de"] == Path("/adapters/de"), "the version that worked still answers"
    assert router.adapter_version("de") == 1 and "de" not in router.loaded(), "a failed replace changes nothing"
    assert [call[0] for call in router.log] == ["replace"], "one all-or-nothing call: nothing to undo"

    with pytest.raises(ValueError, match="different base model"):
        put_adapter(router, "it", tmp_path / "it")
    assert "it" not in router.registered(), "a failed PUT of a new adapter leaves nothing behind"


def test_put_refuses_a_missing_folder_or_a_file_before_touching_the_router(tmp_path):
    router = GatedRouter()
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        put_adapter(router, "fr", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        put_adapter(router, "fr", tmp_path / "file")
    assert router.log == []


def test_delete_unregisters_pinned_or_not_and_refuses_unknown_names():
    router = GatedRouter()
    router.pin("de")
    router.replace("de", Path("/adapters/de-v2"))

    content = router.adapter_hash("de")
    assert delete_adapter(router, "de") == {"name": "de", "deleted": True, "version": 2, "hash": content}
    assert "de" not in router.registered() and "de" not in router.loaded() and router.pinned() == []
    with pytest.raises(KeyError):
        delete_adapter(router, "de")


# ------------------------------------------------------------------------------------ boundaries
def test_the_server_modules_import_no_model_libraries():
    code = ("import sys\n"
            "import xft_core.cli.serve, xft_core.inference.admin, xft_core.inference.batcher, xft_core.inference.protocol\n"
            "assert 'fastapi' not in sys.modules, 'building the CLI parser must not import fastapi'\n"
            "import xft_core.inference.app\n"
            "heavy = sorted({'torch', 'transformers', 'peft'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_real_router_offers_every_method_of_the_protocol():
    """Signatures only (the attributes need a loaded model: tests/test_server.py's real server covers them)."""
    from xft_core.inference.router import Router

    methods = [name for name, value in vars(RouterLike).items() if not name.startswith("_") and callable(value)]
    assert len(methods) == 13, methods
    for name in methods:
        wanted = inspect.signature(getattr(RouterLike, name))
        offered = inspect.signature(getattr(Router, name))
        for parameter in wanted.parameters.values():
            assert parameter.name in offered.parameters, f"Router.{name} lacks parameter '{parameter.name}'"
            assert offered.parameters[parameter.name].kind == parameter.kind, f"Router.{name}({parameter.name}) kind differs"
        extra = [p for p in offered.parameters.values() if p.name not in wanted.parameters and p.default is p.empty]
        assert not extra, f"Router.{name} requires parameters the server does not pass: {extra}"


# -------------------------------------------------------------------------------------- shutdown
def test_stop_answers_what_is_queued_and_running_and_refuses_new_work():
    from xft_core.inference.batcher import ShuttingDown

    router = GatedRouter()
    router.gate.clear()

    async def body(batcher):
        running = asyncio.create_task(batcher.predict(["running"], ["en"]))
        assert await asyncio.to_thread(router.entered.wait, 30)
        queued = [asyncio.create_task(batcher.predict([f"queued{i}"], ["de"])) for i in range(3)]
        put = asyncio.create_task(batcher.control("delete de", lambda: delete_adapter(router, "de")))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(batcher.stop(drain_seconds=30))
        await asyncio.sleep(0.05)
        with pytest.raises(ShuttingDown):
            await batcher.predict(["late"], ["en"])
        with pytest.raises(ShuttingDown):
            await batcher.inspect(lambda: None)
        assert not stopping.done(), "stop waits for the work it accepted"
        router.gate.set()
        await stopping
        return await running, [await q for q in queued], await put

    running, queued, put = run(router, body, max_batch=1)
    assert running[0]["text"] == "running" and [q[0]["text"] for q in queued] == ["queued0", "queued1", "queued2"]
    assert put["deleted"] is True and "late" not in [t for call in router.calls("predict") for t in call]


def test_stop_after_its_drain_time_fails_what_is_left_instead_of_leaving_it_waiting():
    from xft_core.inference.batcher import ShuttingDown

    router = GatedRouter()
    router.gate.clear()

    async def body(batcher):
        running = asyncio.create_task(batcher.predict(["running"], ["en"]))
        assert await asyncio.to_thread(router.entered.wait, 30)
        queued = asyncio.create_task(batcher.predict(["queued"], ["en"]))
        await asyncio.sleep(0)
        opener = threading.Timer(0.5, router.gate.set)  # the stuck forward ends a while after the drain time
        opener.start()
        await batcher.stop(drain_seconds=0.1)
        opener.join()
        return await asyncio.gather(running, queued, return_exceptions=True)

    running, queued = run(router, body, max_batch=1)
    assert isinstance(running, ShuttingDown) and isinstance(queued, ShuttingDown)
    assert router.calls("predict") == [["running"]], "nothing new started after the drain time"
