"""`xft serve`: dynamic batching, hot swap under load, limits and errors.

Two layers:
* in-process, against a model-free fake router (fast): batching across requests, control operations
  between batches on the one inference thread, every error path;
* a real `xft serve` process on 127.0.0.1 over tiny per-language BERT adapters (en, de, ru, es) and two
  more versions of `de`: bounded concurrent traffic in four languages while `de` is replaced twice.
All traffic is loopback, every client call has a timeout, and the server process is always terminated.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx

from xft_core.evaluation.predict import predict_rows
from xft_core.inference.app import create_app
from xft_core.inference.protocol import RouterLike

JSON = {"content-type": "application/json"}


# ===================================================================== in-process, with a fake router
class _Counters:
    def __init__(self):
        self.forwards = 0

    def as_dict(self):
        return {"forwards": self.forwards}


class FakeRouter:
    """Implements `RouterLike`, what the server uses of the Router; 'scores' encode the adapter version, so a
    test can tell which version answered. Records every call and the thread it came from."""

    capacity = 8
    fallback = None

    def __init__(self, adapters=("en", "de"), delay=0.0):
        self.folders = {name: Path(f"/fake/{name}") for name in adapters}
        self.versions = {name: 1 for name in adapters}
        self._loaded: list[str] = list(adapters)
        self._pinned: set[str] = set()
        self.delay = delay
        self.calls: list[tuple] = []
        self.threads: set[int] = set()
        self.lock = threading.RLock()
        self.stats = _Counters()

    def _touch(self, *call):
        self.threads.add(threading.get_ident())
        self.calls.append(call)

    def registered(self):
        return dict(self.folders)

    def pinned(self):
        return sorted(self._pinned)

    def loaded(self):
        return list(self._loaded)

    def adapter_version(self, name):
        return self.versions[name]

    def adapter_languages(self, name):
        return [name]

    def register(self, name, folder, *, pin=False):
        from xft_core.adapters import AdapterError

        self._touch("register", name)
        if "otherbase" in str(folder):
            raise AdapterError(f"{folder}: adapter was trained on a different base model")
        self.folders[name] = Path(folder)
        self.versions[name] = 1
        if pin:
            self._pinned.add(name)

    def unregister(self, name):
        self._touch("unregister", name)  # like the real router: unloads too, pinned or not
        self.folders.pop(name)
        self.versions.pop(name)
        self._pinned.discard(name)
        if name in self._loaded:
            self._loaded.remove(name)

    def load(self, name):
        self._touch("load", name)
        if name not in self._loaded:
            self._loaded.append(name)

    def pin(self, name):
        self._pinned.add(name)

    def unpin(self, name):
        self._pinned.discard(name)

    def adapter_hash(self, name):
        return f"{self.versions[name]:012x}"

    def replace(self, name, folder, *, load=False):
        from xft_core.adapters import AdapterError

        self._touch("replace", name)
        if "otherbase" in str(folder):
            raise AdapterError(f"{folder}: adapter was trained on a different base model")
        time.sleep(self.delay)
        self.folders[name] = Path(folder)
        self.versions[name] += 1

    def predict(self, texts, languages=None, *, adapters=None):
        with self.lock:
            self._touch("predict", len(texts))
            time.sleep(self.delay)
            self.stats.forwards += 1
            out = []
            for text, language in zip(texts, languages):
                if text == "boom":
                    raise ValueError("cannot score 'boom'")
                adapter = language if language in self.folders else "__base__"
                version = self.versions.get(adapter, 0)
                out.append({"label": "pos", "scores": {"pos": version / 10, "neg": 1 - version / 10}, "language": language,
                            "adapter": adapter, "adapter_version": version, "logits": [0.0, 0.0]})
            return out


async def _chunks(parts):
    for part in parts:
        yield part


async def _with_app(app, body):
    """Run `body(client)` against `app` in this event loop, lifespan (the batcher) included."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as client:
            return await body(client)


def test_concurrent_requests_share_batches_and_swaps_run_between_them(tmp_path):
    router = FakeRouter(delay=0.02)
    (tmp_path / "de-v2").mkdir()
    app = create_app(router, max_batch=16, max_wait_ms=20, trust_loopback=True, adapter_roots=[tmp_path])

    async def body(client):
        async def one(i):
            language = ("en", "de")[i % 2]
            r = await client.post("/v1/predict", json={"text": f"text {i}", "language": language})
            assert r.status_code == 200, r.text
            return r.json()["predictions"][0]

        first = await asyncio.gather(*(one(i) for i in range(24)))
        swap = asyncio.create_task(client.put("/v1/adapters/de", json={"path": str(tmp_path / "de-v2")}))
        second = await asyncio.gather(*(one(i) for i in range(24)), swap)
        return first, second

    assert isinstance(router, RouterLike)
    first, second = asyncio.run(_with_app(app, body))
    put = second.pop()
    assert put.status_code == 200 and put.json()["version"] == 2 and put.json()["replaced"] is True
    assert all(p["adapter_version"] == 1 for p in first)
    assert {p["adapter"] for p in first} == {"en", "de"} and all("logits" not in p for p in first)
    # batches, never more than max_batch rows, mixing languages; the model saw fewer forwards than requests
    sizes = [c[1] for c in router.calls if c[0] == "predict"]
    assert max(sizes) > 1 and max(sizes) <= 16 and sum(sizes) == 48
    # the replacement ran between two batches, on the same single thread as every forward
    assert ("replace", "de") in router.calls and len(router.threads) == 1
    # within any one batch, 'de' rows all carry the same version (a batch is never split by a swap)
    assert {p["adapter_version"] for p in second if p["adapter"] == "de"} <= {1, 2}


def test_errors_and_limits_in_process(tmp_path):
    router = FakeRouter()
    app = create_app(router, max_request_rows=4, max_text_chars=50, max_body_bytes=2000, trust_loopback=True,
                     adapter_roots=[tmp_path])

    async def body(client):
        r = {}
        three = [{"text": "a", "language": "en"}, {"text": "b", "language": "xx"}, {"text": "c"}]
        r["ok"] = await client.post("/v1/predict", json={"inputs": three})
        r["rows"] = await client.post("/v1/predict", json={"inputs": [{"text": "a"}] * 5})
        r["chars"] = await client.post("/v1/predict", json={"inputs": [{"text": "a"}, {"text": "x" * 51}]})
        r["body"] = await client.post("/v1/predict", content=json.dumps({"text": "y" * 3000}), headers=JSON)
        r["chunked"] = await client.post("/v1/predict", content=_chunks([b'{"text": "', b"y" * 1500, b"z" * 1500, b'"}']),
                                         headers=JSON)
        r["malformed"] = await client.post("/v1/predict", content=b"{not json", headers=JSON)
        r["both"] = await client.post("/v1/predict", json={"text": "a", "inputs": [{"text": "b"}]})
        r["neither"] = await client.post("/v1/predict", json={"language": "en"})
        r["empty"] = await client.post("/v1/predict", json={"inputs": []})
        r["extra"] = await client.post("/v1/predict", json={"text": "a", "lang": "en"})
        r["bad_row"] = await client.post("/v1/predict", json={"text": "boom", "language": "en"})
        r["delete_unknown"] = await client.delete("/v1/adapters/fr")
        r["put_missing"] = await client.put("/v1/adapters/fr", json={"path": str(tmp_path / "no" / "such")})
        r["put_outside"] = await client.put("/v1/adapters/fr", json={"path": "/no/such/folder"})
        r["put_relative"] = await client.put("/v1/adapters/fr", json={"path": "relative/folder"})
        r["put_no_path"] = await client.put("/v1/adapters/fr", json={"pin": True})
        r["list"] = await client.get("/v1/adapters")
        r["health"] = await client.get("/healthz")
        return r

    r = asyncio.run(_with_app(app, body))
    assert r["ok"].status_code == 200
    predictions = r["ok"].json()["predictions"]
    assert [p["adapter"] for p in predictions] == ["en", "__base__", "__base__"]
    assert [p["language"] for p in predictions] == ["en", "xx", "auto"], "a missing language is sent to the router as 'auto'"
    assert r["rows"].status_code == 413 and "max_request_rows=4" in r["rows"].json()["detail"]
    assert r["chars"].status_code == 413
    assert "inputs[1].text" in r["chars"].json()["detail"] and "max_text_chars=50" in r["chars"].json()["detail"]
    assert r["body"].status_code == 413 and "2000 bytes" in r["body"].json()["detail"]
    assert r["chunked"].status_code == 413, "a body streamed without content-length is counted too"
    for key in ("malformed", "both", "neither", "empty", "extra"):
        assert r[key].status_code == 422, (key, r[key].text)
    assert r["bad_row"].status_code == 422 and "boom" in r["bad_row"].json()["detail"]
    assert r["delete_unknown"].status_code == 404 and "'fr'" in r["delete_unknown"].json()["detail"]
    assert r["put_missing"].status_code == 400 and "does not exist" in r["put_missing"].json()["detail"]
    assert r["put_outside"].status_code == 403 and "outside the adapter roots" in r["put_outside"].json()["detail"]
    assert r["put_relative"].status_code == 400 and "absolute" in r["put_relative"].json()["detail"]
    assert r["put_no_path"].status_code == 422
    listing = r["list"].json()
    assert listing["registered"] == ["de", "en"] and listing["adapters"]["de"]["version"] == 1
    assert listing["adapters"]["de"]["languages"] == ["de"] and listing["router_stats"] == {"forwards": 2}
    assert listing["limits"]["max_request_rows"] == 4 and "server_stats" in listing
    assert r["health"].json()["status"] == "ok"


def test_one_bad_request_fails_alone_inside_a_shared_batch():
    router = FakeRouter(delay=0.02)
    app = create_app(router, max_batch=32, max_wait_ms=30)

    async def body(client):
        texts = ["fine"] * 6 + ["boom"] + ["fine"] * 6
        return await asyncio.gather(*(client.post("/v1/predict", json={"text": t, "language": "en"}) for t in texts))

    responses = asyncio.run(_with_app(app, body))
    codes = [r.status_code for r in responses]
    assert codes.count(422) == 1 and codes.count(200) == 12


def test_put_new_adapter_pin_and_delete_in_process(tmp_path):
    router = FakeRouter()
    app = create_app(router, trust_loopback=True, adapter_roots=[tmp_path])
    (tmp_path / "fr").mkdir()
    (tmp_path / "otherbase").mkdir()

    async def body(client):
        r = {}
        r["put"] = await client.put("/v1/adapters/fr", json={"path": str(tmp_path / "fr"), "pin": True})
        r["list"] = await client.get("/v1/adapters")
        r["fr"] = await client.post("/v1/predict", json={"text": "bonjour", "language": "fr"})
        r["other"] = await client.put("/v1/adapters/it", json={"path": str(tmp_path / "otherbase")})
        r["delete"] = await client.delete("/v1/adapters/fr")
        r["after"] = await client.post("/v1/predict", json={"text": "bonjour", "language": "fr"})
        r["again"] = await client.delete("/v1/adapters/fr")
        return r

    r = asyncio.run(_with_app(app, body))
    assert r["put"].status_code == 200, r["put"].text
    put = r["put"].json()
    summary = (put["name"], put["version"], put["replaced"], put["pinned"], put["path"])
    assert summary == ("fr", 1, False, True, str(tmp_path / "fr"))
    listing = r["list"].json()
    assert "fr" in listing["pinned"] and listing["loaded"][-1] == "fr" and listing["adapters"]["fr"]["loaded"]
    assert r["fr"].json()["predictions"][0]["adapter"] == "fr"
    assert r["other"].status_code == 400 and "different base model" in r["other"].json()["detail"]
    assert "it" not in router.folders, "a failed PUT leaves nothing registered"
    assert r["delete"].status_code == 200 and "fr" not in router.folders and "fr" not in router.loaded()
    assert r["after"].json()["predictions"][0]["adapter"] == "__base__"
    assert r["again"].status_code == 404


# ====================================================================== a real server, real adapters
ES = (["bueno", "genial"], ["malo", "horrible"], ["teléfono", "cámara"])
TEXTS = {"en": "phone good", "de": "Telefon gut", "ru": "телефон хорошо", "es": "teléfono bueno"}
LANGUAGES = tuple(TEXTS)


def _write_spanish(folder: Path, n_train: int = 32, dev: int = 8, seed: int = 3) -> None:
    rng = random.Random(seed)
    positive, negative, nouns = ES
    for split, n in (("train", n_train), ("dev", dev)):
        with (folder / f"es.{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in range(n):
                label = "pos" if i % 2 == 0 else "neg"
                word = rng.choice(positive if label == "pos" else negative)
                handle.write(json.dumps({"text": f"{rng.choice(nouns)} {word}", "label": label}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory):
    """Per-language adapters for en/de/ru/es (one run), and versions 2 and 3 of `de` (other seeds, other runs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and much faster on a busy machine
    try:
        return _train_adapters(tiny_model("bert"), tmp_path_factory.mktemp("serve"))
    finally:
        torch.set_num_threads(threads)


def _train_adapters(model: Path, root: Path) -> dict:
    from xft_core.training import train

    data = write_sentiment_data(root / "data", sizes={"en": 32, "de": 32, "ru": 32}, dev=8, vocabulary=2)
    _write_spanish(data)
    run = train(tiny_config(model, data, root / "runs", name="four", adapters="per_language", sampler="round_robin",
                            training={"max_steps": 12, "learning_rate": 5e-2}), progress=False)
    versions = {1: run.adapter_dirs["de"]}
    for version, seed in ((2, 101), (3, 202)):
        config = tiny_config(model, data, root / "runs", name=f"de-v{version}", adapters="per_language",
                             training={"max_steps": 4, "learning_rate": 5e-2, "seed": seed})
        config["data"]["train_languages"] = ["de"]
        versions[version] = train(config, progress=False).adapter_dirs["de"]
    # the same package claiming another base model: the server must refuse it
    foreign = root / "foreign-de"
    shutil.copytree(versions[2], foreign)
    manifest = json.loads((foreign / "xft.json").read_text())
    manifest["base_fingerprint"] = "0" * 64
    (foreign / "xft.json").write_text(json.dumps(manifest))
    return {"run": run.paths.root, "packages": dict(run.adapter_dirs), "de": versions, "foreign": foreign, "root": root}


@pytest.fixture(scope="module")
def expected(adapters):
    """Scores of each test text under its language's adapter, and of the `de` text under versions 1-3,
    computed straight with peft (not through the router the server uses)."""
    from xft_core.adapters import attach, load_base

    packages = adapters["packages"]
    base = load_base(packages["en"])
    model = base.model
    rows, names = [], []
    for language in LANGUAGES:
        model = attach(base, model, packages[language], language)
        rows.append({"text": TEXTS[language]})
        names.append(language)
    for version in (2, 3):
        model = attach(base, model, adapters["de"][version], f"de-v{version}")
        rows.append({"text": TEXTS["de"]})
        names.append(f"de-v{version}")
    predictions = predict_rows(base.head, model, base.tokenizer, rows, batch_size=16, max_length=256,
                               route={"adapter_names": names})
    scores = {name: p["scores"] for name, p in zip(names, predictions)}
    de = {1: scores["de"], 2: scores["de-v2"], 3: scores["de-v3"]}
    for a, b in ((1, 2), (2, 3), (1, 3)):
        assert _distance(de[a], de[b]) > 1e-3, "the three de versions must be told apart by their scores"
    return {"languages": {lang: scores[lang] for lang in LANGUAGES}, "de": de}


def _distance(a: dict, b: dict) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(adapters, tmp_path_factory):
    """`xft serve <run>` as a real process on 127.0.0.1; yields its base URL; always terminated."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    # one torch thread: a tiny model gains nothing from more, and a busy 2-core machine stalls on oversubscription
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "xft_core.cli", "serve", str(adapters["run"]), "--port", str(port),
               "--max-batch", "32", "--max-wait-ms", "10", "--capacity", "8", "--adapter-root", str(adapters["root"])]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"xft serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"xft serve did not answer /healthz within 90 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_hot_swap_under_concurrent_traffic_fails_nothing(server, adapters, expected):
    threads, minimum, cap = 8, 25, 60  # requests per thread: at least `minimum`, at most `cap`
    lock = threading.Lock()
    completed = [0]
    swaps_done = threading.Event()
    failures: list[str] = []
    records: dict[int, list[tuple]] = {t: [] for t in range(threads)}  # per thread, in completion order
    stop_at = time.monotonic() + 45

    def rows_for(thread: int, i: int) -> list[dict]:
        first = LANGUAGES[(thread + i) % 4]
        if i % 3 == 2:  # every third request carries several languages, 'de' among them
            return [{"text": TEXTS[first], "language": first}, {"text": TEXTS["de"], "language": "de"},
                    {"text": TEXTS["es"], "language": "es"}]
        return [{"text": TEXTS[first], "language": first}]

    def client_thread(thread: int) -> None:
        sent, after_swaps = 0, 0
        with httpx.Client(base_url=server, timeout=30) as client:
            while sent < cap and time.monotonic() < stop_at:
                if sent >= minimum and swaps_done.is_set() and after_swaps >= 4:
                    break
                rows = rows_for(thread, sent)
                body = {"text": rows[0]["text"], "language": rows[0]["language"]} if len(rows) == 1 else {"inputs": rows}
                swapped_before = swaps_done.is_set()
                started = time.monotonic()
                try:
                    response = client.post("/v1/predict", json=body)
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(f"thread {thread}: {exc!r}")
                    sent += 1
                    continue
                sent += 1
                after_swaps += swapped_before
                if response.status_code != 200:
                    with lock:
                        failures.append(f"thread {thread}: {response.status_code} {response.text[:200]}")
                    continue
                records[thread].append((started, time.monotonic(), rows, response.json()["predictions"]))
                with lock:
                    completed[0] += 1

    def wait_for(count: int) -> None:
        while completed[0] < count and time.monotonic() < stop_at:
            time.sleep(0.005)

    workers = [threading.Thread(target=client_thread, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    puts = []
    with httpx.Client(base_url=server, timeout=60) as control:
        for version in (2, 3):
            wait_for(completed[0] + 40)
            sent = time.monotonic()
            response = control.put("/v1/adapters/de", json={"path": str(adapters["de"][version])})
            puts.append((version, sent, time.monotonic(), response))
    swaps_done.set()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(w.is_alive() for w in workers), "client threads did not finish"

    assert not failures, failures[:5]
    for version, _, _, response in puts:
        assert response.status_code == 200, response.text
        assert response.json()["version"] == version and response.json()["replaced"] is True
    total = sum(len(r) for r in records.values())
    assert threads * minimum <= total <= threads * cap

    (_, put2_sent, put2_done, _), (_, put3_sent, put3_done, _) = puts
    seen = set()
    for thread, items in records.items():
        de_versions = []
        for started, finished, rows, predictions in items:
            assert len(predictions) == len(rows)
            for row, p in zip(rows, predictions):
                language = row["language"]
                assert p["language"] == language and p["adapter"] == language
                if language != "de":
                    assert _distance(p["scores"], expected["languages"][language]) < 1e-4, (language, p)
                    continue
                version = p["adapter_version"]
                assert version in (1, 2, 3), p
                # answered wholly by the version it names
                assert _distance(p["scores"], expected["de"][version]) < 1e-4, (version, p["scores"], expected["de"])
                # never a stale version after a swap returned, never a future one before it was asked for
                if started > put3_done:
                    assert version == 3
                elif started > put2_done:
                    assert version >= 2
                if finished < put2_sent:
                    assert version == 1
                elif finished < put3_sent:
                    assert version <= 2
                de_versions.append(version)
                seen.add(version)
        assert de_versions == sorted(de_versions), f"thread {thread} saw versions go backwards: {de_versions}"
    assert seen == {1, 2, 3}, f"versions seen: {seen}"

    listing = httpx.get(server + "/v1/adapters", timeout=10).json()
    assert listing["adapters"]["de"]["version"] == 3
    assert listing["adapters"]["de"]["path"] == str(adapters["de"][3])
    stats = listing["server_stats"]
    assert stats["max_batch_rows"] > 1 and stats["batches"] < stats["requests"], stats
    assert stats["failed"] == 0


def test_real_server_listing_errors_and_unload(server, adapters, expected):
    with httpx.Client(base_url=server, timeout=30) as client:
        listing = client.get("/v1/adapters").json()
        assert set(listing["registered"]) >= set(LANGUAGES)
        assert set(listing["loaded"]) >= set(LANGUAGES) or len(listing["loaded"]) == listing["capacity"]
        assert listing["adapters"]["ru"]["languages"] == ["ru"]

        unknown = client.post("/v1/predict", json={"text": "kitabu kizuri", "language": "sw"})
        assert unknown.status_code == 200, unknown.text
        p = unknown.json()["predictions"][0]
        assert (p["adapter"], p["language"], p["adapter_version"]) == ("__base__", "sw", None)
        auto = client.post("/v1/predict", json={"inputs": [
            {"text": "Das Telefon ist wirklich sehr gut, ich bin zufrieden", "language": "auto"},
            {"text": "Телефон очень хороший, я доволен", "language": None},
        ]})
        assert auto.status_code == 200, auto.text
        assert [(p["language"], p["adapter"]) for p in auto.json()["predictions"]] == [("de", "de"), ("ru", "ru")]

        r = client.post("/v1/predict", content=b'{"text": ', headers=JSON)
        assert r.status_code == 422
        r = client.post("/v1/predict", json={"inputs": [{"text": "a"}] * 257})
        assert r.status_code == 413 and "max_request_rows=256" in r.json()["detail"]
        r = client.post("/v1/predict", json={"text": "a" * 4097})
        assert r.status_code == 413 and "max_text_chars=4096" in r.json()["detail"]
        r = client.post("/v1/predict", content=b'{"text": "' + b"a" * 1_100_000 + b'"}', headers=JSON)
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

        r = client.put("/v1/adapters/de", json={"path": str(adapters["foreign"])})
        assert r.status_code == 400 and "different base model" in r.json()["detail"], r.text
        r = client.put("/v1/adapters/fr", json={"path": str(adapters["run"] / "adapters" / "nope")})
        assert r.status_code == 400 and "does not exist" in r.json()["detail"]
        assert client.delete("/v1/adapters/fr").status_code == 404

        # unload + unregister, then the language falls back to the base; PUT brings it back
        r = client.delete("/v1/adapters/es")
        assert r.status_code == 200, r.text
        listing = client.get("/v1/adapters").json()
        assert "es" not in listing["registered"] and "es" not in listing["loaded"]
        p = client.post("/v1/predict", json={"text": TEXTS["es"], "language": "es"}).json()["predictions"][0]
        assert p["adapter"] == "__base__"
        r = client.put("/v1/adapters/es", json={"path": str(adapters["packages"]["es"]), "pin": True})
        assert r.status_code == 200 and r.json()["replaced"] is False, r.text
        p = client.post("/v1/predict", json={"text": TEXTS["es"], "language": "es"}).json()["predictions"][0]
        assert p["adapter"] == "es" and _distance(p["scores"], expected["languages"]["es"]) < 1e-4
        assert "es" in client.get("/v1/adapters").json()["pinned"]
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_corrupt_put_is_a_4xx_naming_the_file_and_changes_nothing(server, adapters, expected, tmp_path_factory):
    corrupt = adapters["root"] / "corrupt-ru"  # inside the adapter root: refused for its content, not its place
    shutil.rmtree(corrupt, ignore_errors=True)
    shutil.copytree(adapters["packages"]["ru"], corrupt)
    weights = corrupt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    rows = [{"text": TEXTS[lang], "language": lang} for lang in ("en", "ru", "es")]
    with httpx.Client(base_url=server, timeout=60) as client:
        before = client.get("/v1/adapters").json()
        answers = client.post("/v1/predict", json={"inputs": rows}).json()["predictions"]
        for name in ("ru", "ru-new"):  # a new version of a loaded adapter, and a new adapter
            r = client.put(f"/v1/adapters/{name}", json={"path": str(corrupt)})
            assert r.status_code == 400 and "adapter_model.safetensors" in r.json()["detail"], r.text
        after = client.get("/v1/adapters").json()
        again = client.post("/v1/predict", json={"inputs": rows}).json()["predictions"]
    assert again == answers, "the same request answers the same, to the bit"
    for lang, p in zip(("en", "ru", "es"), again):
        assert _distance(p["scores"], expected["languages"][lang]) < 1e-4
    for key in ("registered", "pinned"):
        assert after[key] == before[key]
    assert sorted(after["loaded"]) == sorted(before["loaded"]) and len(after["loaded"]) <= after["capacity"]
    assert after["adapters"]["ru"] == before["adapters"]["ru"]
    assert after["router_stats"]["failed_loads"] == before["router_stats"]["failed_loads"] + 2
