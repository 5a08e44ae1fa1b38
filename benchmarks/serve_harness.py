"""benchmarks/serve_load.py's helpers: the `xft serve` process it loads, and its throughput mode.

Throughput (issue 10): a real `xft serve` under 1, 8 and 32 concurrent clients, each request one row in a language
drawn at random (what real clients send, so the server's dynamic batcher must do the batching), no adapter changes,
every answer checked; against the router's own batch throughput in this process on the same run.

    python benchmarks/serve_load.py --throughput                          # tiny offline BERT, levels 1 8 32
    python benchmarks/serve_load.py --throughput --model gemma3-270m      # the embedded model (issue 10's figure)
    python benchmarks/serve_load.py --throughput --quick                  # tiny model, 2.5 s per level, levels 1 8 (CI)

Printed per level: requests/s, rows/s, p50 and p99 latency, the mean rows per server batch; then the router's rows/s
on mixed-language batches of the server's max batch size, and the ratio server rows/s at 8 clients / router rows/s
against the floor of 0.8. The server and the in-process router run with the same torch thread count; the router is
measured after the server has stopped, so the two never share the CPU.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLOOR = 0.8  # server rows/s at 8 clients >= 80% of the router's batch rows/s
FLOOR_CLIENTS = 8

Row = tuple[str, str]  # (language, text)
Check = Callable[[str, str, dict], "str | None"]  # (language, text, prediction) -> what is wrong, or None


def timed_predict(http: Any, body: dict, errors: list[str], lock: Any, who: str) -> tuple[Any, float] | None:
    """POST /v1/predict: (the answer's predictions, seconds taken), or None after recording in `errors` why there
    is none (no answer, or a status other than 200)."""
    import httpx

    sent = time.monotonic()
    try:
        response = http.post("/v1/predict", json=body)
    except httpx.HTTPError as exc:
        with lock:
            errors.append(f"{who}: no answer ({exc!r})")
        return None
    took = time.monotonic() - sent
    if response.status_code != 200:
        with lock:
            errors.append(f"{who}: {response.status_code} {response.text[:200]}")
        return None
    return response.json()["predictions"], took


# ---------------------------------------------------------------------------------------------- the server
@dataclass
class Server:
    process: subprocess.Popen
    url: str
    token: str
    log: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=30)


def start_server(run: Path, log: Path, *, fallback: str | None, capacity: int = 8, max_batch: int = 32,
                 max_wait_ms: float = 5, threads: int = 1, timeout: float = 120) -> Server:
    """`xft serve` on 127.0.0.1 with an admin token (from the environment), `run` as the adapter root, and `threads`
    torch threads (OMP_NUM_THREADS); returns once /healthz answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(threads), "XFT_ADMIN_TOKEN": token,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "xft_core.cli", "serve", str(run), "--port", str(port), "--capacity", str(capacity),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]
    command += ["--fallback", fallback] if fallback else []
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(process, f"http://127.0.0.1:{port}", token, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"xft serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"xft serve did not answer /healthz within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


# -------------------------------------------------------------------------------------------- throughput
@dataclass
class Level:
    clients: int
    requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    batches: int = 0  # server batches run during the level (from its /v1/adapters stats)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else float("nan")

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "requests": self.requests, "rows": self.rows, "seconds": round(self.seconds, 3),
                "requests_per_second": self.requests_per_second, "rows_per_second": self.rows_per_second,
                "p50_ms": self.percentile(0.5), "p99_ms": self.percentile(0.99),
                "mean_batch_rows": self.rows / self.batches if self.batches else 0.0,
                "wrong": self.wrong[:20], "server_errors": self.server_errors[:20]}


def server_stats(url: str, headers: dict[str, str]) -> dict[str, Any]:
    import httpx

    info = httpx.get(url + "/v1/adapters", headers=headers, timeout=60).json()
    return {"server": info.get("server_stats", {}), "router": info.get("router_stats", {})}


def load_level(url: str, headers: dict[str, str], pool: list[Row], *, clients: int, seconds: float, check: Check,
               seed: int = 0) -> Level:
    """`clients` threads, each sending one-row requests back to back for `seconds`; every answer is checked."""
    import httpx

    level = Level(clients)
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    window: dict[str, float] = {}

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        with httpx.Client(base_url=url, timeout=120) as http:
            try:
                http.get("/healthz")  # the connection is open before the clock starts
            finally:
                ready.wait(timeout=120)
            while time.monotonic() < window["stop"]:
                language, text = rng.choice(pool)
                answer = timed_predict(http, {"inputs": [{"text": text, "language": language}]}, level.server_errors,
                                       lock, f"client {number}")
                if answer is None:
                    continue
                predictions, took = answer
                problem = check(language, text, predictions[0])
                with lock:
                    level.requests += 1
                    level.rows += 1
                    level.latencies.append(took)
                    if problem:
                        level.wrong.append(f"client {number}: {problem}")

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for worker in workers:
        worker.start()
    before = server_stats(url, headers)["server"].get("batches", 0)
    window["stop"] = time.monotonic() + seconds
    started = time.monotonic()
    ready.wait(timeout=120)
    for worker in workers:
        worker.join(timeout=seconds + 120)
    level.seconds = time.monotonic() - started
    level.batches = server_stats(url, headers)["server"].get("batches", 0) - before
    return level


def mixed_batches(pool: list[Row], size: int, count: int, seed: int = 0) -> list[list[Row]]:
    """`count` batches of `size` rows drawn from `pool` the way the clients draw them: languages mixed."""
    rng = random.Random(seed)
    return [[rng.choice(pool) for _ in range(size)] for _ in range(count)]


def router_rows_per_second(run: Path, pool: list[Row], *, batch: int, seconds: float, capacity: int,
                           fallback: str | None) -> dict[str, Any]:
    """The router's own batch throughput: `Router.from_run` built as `xft serve` builds it (same capacity,
    fallback and precision), predicting mixed-language batches of `batch` rows back to back for `seconds`."""
    import torch

    from xft_core.inference.router import Router

    router = Router.from_run(run, capacity=capacity, fallback=fallback, precision="no")
    batches = mixed_batches(pool, batch, 16)
    for texts in batches[:4]:  # warm-up: adapters loaded, first-use allocations done before the clock starts
        router.predict([t for _, t in texts], [lang for lang, _ in texts])
    rows, times, i = 0, [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        texts = batches[i % len(batches)]
        t = time.perf_counter()
        router.predict([t for _, t in texts], [lang for lang, _ in texts])
        times.append(time.perf_counter() - t)
        rows, i = rows + len(texts), i + 1
    return {"rows_per_second": rows / sum(times), "median_batch_ms": statistics.median(times) * 1e3, "batches": len(times),
            "batch_rows": batch, "threads": torch.get_num_threads(), "precision": router.precision,
            "forward_batch_size": router.batch_size}


def run_throughput(serve: Callable[[], Any], run: Path, pool: list[Row], check: Check, *, levels: list[int],
                   seconds: float, batch: int, capacity: int, fallback: str | None, threads: int) -> dict[str, Any]:
    """Every level against a fresh-warm server from `serve()` (stopped after the last level), then the router."""
    import torch

    torch.set_num_threads(threads)
    server = serve()
    try:
        for language, text in pool:  # warm-up: every adapter loaded, every code path run once
            warm_up(server.url, language, text)
        results = [load_level(server.url, server.headers(), pool, clients=n, seconds=seconds, check=check, seed=n)
                   for n in levels]
        stats = server_stats(server.url, server.headers())
    finally:
        server.stop()
    router = router_rows_per_second(run, pool, batch=batch, seconds=seconds, capacity=capacity, fallback=fallback)
    at = next((r for r in results if r.clients == FLOOR_CLIENTS), None)
    ratio = at.rows_per_second / router["rows_per_second"] if at is not None else None
    return {"mode": "throughput", "threads": threads, "levels": [r.as_dict() for r in results], "router": router,
            "server_stats": stats, "ratio": ratio, "floor": FLOOR, "floor_clients": FLOOR_CLIENTS,
            "floor_met": ratio is not None and ratio >= FLOOR,
            "ok": not any(r.wrong or r.server_errors for r in results)}


def warm_up(url: str, language: str, text: str) -> None:
    import httpx

    response = httpx.post(url + "/v1/predict", json={"inputs": [{"text": text, "language": language}]}, timeout=120)
    response.raise_for_status()


def print_throughput(result: dict[str, Any], describe: str) -> None:
    router = result["router"]
    print(describe)
    print(f"torch threads {result['threads']}: the server's (OMP_NUM_THREADS={result['threads']}) and the router's "
          f"(torch.get_num_threads() = {router['threads']}); precision {router['precision']}")
    print()
    print(f"{'clients':>7} {'requests/s':>11} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rows/batch':>11} "
          f"{'wrong':>6} {'5xx':>5}")
    for r in result["levels"]:
        print(f"{r['clients']:>7d} {r['requests_per_second']:>11.1f} {r['rows_per_second']:>9.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['mean_batch_rows']:>11.2f} {len(r['wrong']):>6d} {len(r['server_errors']):>5d}")
    print()
    print(f"router batch: {router['rows_per_second']:.1f} rows/s ({router['batch_rows']} mixed-language rows per predict, "
          f"forwards of {router['forward_batch_size']}, median {router['median_batch_ms']:.1f} ms, {router['batches']} batches)")
    if result["ratio"] is None:
        print(f"server rows/s at {FLOOR_CLIENTS} clients / router rows/s: not measured ({FLOOR_CLIENTS} is not among the levels)")
    else:
        mark = "ok  " if result["floor_met"] else "MISS"
        print(f"server rows/s at {FLOOR_CLIENTS} clients / router rows/s: {result['ratio']:.2f}   {mark} (floor {FLOOR})")
    for r in result["levels"]:
        for line in (r["wrong"] + r["server_errors"])[:5]:
            print("  ", line)


def throughput(args: Any, serve: Callable[[], Any], run: Path, pool: list[Row], check: Check, *, describe: str,
               fallback: str | None) -> int:
    """serve_load.py's --throughput: run, print, write --json; exit status 1 on a wrong answer or a 5xx, or on a
    missed floor outside --quick."""
    import json

    result = run_throughput(serve, run, pool, check, levels=args.levels, seconds=args.seconds, batch=args.max_batch,
                            capacity=args.capacity, fallback=fallback, threads=args.threads)
    print_throughput(result, f"xft serve on loopback: {describe}; one row per request, {args.seconds:g} s per level, "
                             f"max batch {args.max_batch}, max wait {args.max_wait_ms:g} ms, capacity {args.capacity}")
    if args.json:
        args.json.write_text(json.dumps({**result, "describe": describe, "quick": args.quick}, indent=2) + "\n")
    return 0 if result["ok"] and (result["floor_met"] or args.quick) else 1
