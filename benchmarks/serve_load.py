"""Load test of `xft serve`: a real server process on loopback, concurrent clients in four languages, adapters
replaced and deleted while it runs, one corrupt upload in the middle, and a SIGTERM with requests in flight.

    python benchmarks/serve_load.py                      # tiny offline BERT adapters, 60 s of load, 16 clients
    python benchmarks/serve_load.py --seconds 20 --clients 8 --capacity 2 --json report.json
    python benchmarks/serve_load.py --throughput [--quick] [--model gemma3-270m]   # issue 10: see serve_harness.py

Pass/fail, not timing: every answer must equal the expected output of the adapter version it reports (its
`adapter_hash`, computed here independently with peft on the same package files), no valid request may get a 5xx,
every adapter change must get the status it should (the corrupt upload a 400 naming the file, deleting the fallback
a 409), versions never go backwards for one client, and every request in flight at SIGTERM is answered. Printed:
requests/s, rows/s, p50 and p99 latency; `--json FILE` also writes the whole report (what tests/test_serve_load.py,
which runs the same code for a few seconds in CI, checks). `--model` takes a folder or a model reference
(`gemma3-270m`, the embedded model), as the training config's `model` key does.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins", ROOT / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from serve_harness import Server, server_stats, start_server, throughput, timed_predict  # noqa: E402 - benchmarks/ is on the path only now

LANGUAGES = ("en", "de", "es", "zh")
FALLBACK = "en"
REVIEWS = ROOT / "examples" / "data" / "reviews"
TOLERANCE = 1e-4  # rows batched with others pad differently: float noise, far below what tells two versions apart


@dataclass
class Setup:
    run: Path  # the folder served, and the adapter root
    packages: dict[str, Path]  # every package the load uses: the run's four, de-v2, de-v3 and the corrupt one
    expected: dict[str, dict[str, dict[str, float]]]  # adapter_hash -> text -> scores
    texts: dict[str, list[str]]


def prepare(work: Path, model: str | Path | None = None, steps: int = 8) -> Setup:
    """Train per-language adapters (tiny offline BERT unless `model`: a folder or a reference), derive two more
    versions of `de` (its LoRA updates scaled) and a truncated copy of `es`, and compute every package's expected
    scores."""
    from xft_core.inference.packages import content_hash
    from xft_core.testing import tiny_model_cache
    from xft_core.training import train

    model = model or tiny_model_cache("bert", work / "models")
    config = {
        "name": "serve-load", "output_dir": str(work / "runs"), "model": str(model), "task": "sequence-classification",
        "strategy": "lora", "strategy_options": {"r": 4, "alpha": 8}, "adapters": "per_language", "sampler": "round_robin",
        "data": {"path": str(REVIEWS), "train_languages": list(LANGUAGES), "max_eval_examples": 4},
        "training": {"max_steps": steps, "batch_size": 8, "learning_rate": 5e-3, "precision": "no", "seed": 3,
                     "eval_every": 10**6},
        "data_check": False,
    }
    run = train(config, progress=False)
    packages = {language: Path(run.adapter_dirs[language]) for language in LANGUAGES}
    candidates = run.paths.root / "candidates"  # inside the served folder: PUT may load from there
    for name, factor in (("de-v2", -1.0), ("de-v3", 0.5)):
        packages[name] = _scaled_copy(packages["de"], candidates / name, factor)
    corrupt = candidates / "es-corrupt"
    shutil.copytree(packages["es"], corrupt, dirs_exist_ok=True)
    weights = corrupt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    texts = {language: [json.loads(line)["text"] for line in (REVIEWS / f"{language}.test.jsonl").read_text("utf-8").splitlines()]
             for language in LANGUAGES}
    texts = {language: lines[:6] for language, lines in texts.items()}
    scored = [folder for name, folder in packages.items() if name != "es-corrupt"]
    everything = sorted({t for ts in texts.values() for t in ts})
    expected = {content_hash(folder): scores for folder, scores in zip(scored, _scores(scored, everything))}
    packages["es-corrupt"] = corrupt
    return Setup(run.paths.root, packages, expected, texts)


def _scaled_copy(source: Path, target: Path, factor: float) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, dirs_exist_ok=True)
    weights = target / "adapter_model.safetensors"
    tensors = {k: v * factor if "lora_B" in k else v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    return target


def _scores(folders: list[Path], texts: list[str]) -> list[dict[str, dict[str, float]]]:
    """Each package's scores of every text, straight through the strategy and the prediction loop (no router)."""
    from xft_core.adapters import attach, load_base
    from xft_core.evaluation.predict import predict_rows

    base = load_base(folders[0])
    model, names = base.model, []
    for i, folder in enumerate(folders):
        names.append(f"p{i}")
        model = attach(base, model, folder, names[-1])
    rows = [{"text": t} for _ in folders for t in texts]
    route = {"adapter_names": [name for name in names for _ in texts]}
    limit = min(256, base.tokenizer.model_max_length)
    out = predict_rows(base.head, model, base.tokenizer, rows, batch_size=32, max_length=limit, route=route)
    return [{t: out[i * len(texts) + j]["scores"] for j, t in enumerate(texts)} for i in range(len(folders))]


def problem_of(setup: Setup, language: str, text: str, p: dict) -> str | None:
    """What is wrong with prediction `p` for `text` sent as `language`: its routing, or scores that are not those
    of the adapter version it names; None when it is right."""
    scores = setup.expected.get(p.get("adapter_hash"), {}).get(text)
    if p.get("language") != language or p.get("adapter") not in (language, FALLBACK):
        return f"routed {language} to {p.get('adapter')} as {p.get('language')}"
    if scores is None:
        return f"unknown adapter_hash {p.get('adapter_hash')}"
    if max(abs(scores[k] - p["scores"][k]) for k in scores) > TOLERANCE:
        return f"scores {p['scores']} are not those of {p['adapter']}@{p['adapter_hash']}: {scores}"
    return None


# ------------------------------------------------------------------------------------------------ the load
@dataclass
class Report:
    requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # answers that are not what their reported version computes
    server_errors: list[str] = field(default_factory=list)  # 5xx (or no answer) for a valid request
    admin: list[tuple[str, int, int, str]] = field(default_factory=list)  # (operation, wanted status, got, detail)
    hashes: set[str] = field(default_factory=set)

    @property
    def admin_failures(self) -> list[tuple[str, int, int, str]]:
        return [a for a in self.admin if a[1] != a[2]]

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.server_errors and not self.admin_failures

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else float("nan")

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        return (f"{self.requests} requests ({self.rows} rows) in {self.seconds:.1f} s: {rate:.1f} requests/s, "
                f"{self.rows / self.seconds if self.seconds else 0:.1f} rows/s; latency p50 {self.percentile(0.5):.1f} ms, "
                f"p99 {self.percentile(0.99):.1f} ms; wrong answers {len(self.wrong)}, 5xx {len(self.server_errors)}, "
                f"adapter changes {len(self.admin) - len(self.admin_failures)}/{len(self.admin)} as expected, "
                f"{len(self.hashes)} adapter versions seen")

    def as_dict(self) -> dict:
        return {"mode": "reliability", "requests": self.requests, "rows": self.rows, "seconds": round(self.seconds, 3),
                "requests_per_second": self.requests / self.seconds if self.seconds else 0.0,
                "rows_per_second": self.rows / self.seconds if self.seconds else 0.0,
                "p50_ms": self.percentile(0.5), "p99_ms": self.percentile(0.99), "wrong": self.wrong,
                "server_errors": self.server_errors, "hashes": sorted(self.hashes), "ok": self.ok,
                "admin": [{"operation": op, "wanted": wanted, "got": got, "detail": detail}
                          for op, wanted, got, detail in self.admin]}


def admin_plan(setup: Setup) -> list[tuple[float, str, str, dict | None, int]]:
    """(when, as a fraction of the run; method; adapter; body; the status it must get)."""
    p = setup.packages
    return [
        (0.15, "PUT", "de", {"path": str(p["de-v2"])}, 200),
        (0.30, "PUT", "es", {"path": str(p["es-corrupt"])}, 400),  # the corrupt upload: refused, es keeps answering
        (0.40, "DELETE", "zh", None, 200),  # zh rows go to the fallback
        (0.50, "DELETE", FALLBACK, None, 409),  # the fallback cannot go
        (0.60, "PUT", "zh", {"path": str(p["zh"])}, 200),
        (0.75, "PUT", "de", {"path": str(p["de-v3"])}, 200),
        (0.90, "PUT", "de", {"path": str(p["de"])}, 200),  # the first content again: its hash, a new version
    ]


def run_load(server: Server, setup: Setup, *, seconds: float, clients: int, seed: int = 0) -> Report:
    import httpx

    report = Report()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    def check(rows: list[tuple[str, str]], predictions: list[dict], versions: dict[str, int], where: str) -> None:
        for (language, text), p in zip(rows, predictions):
            problem = problem_of(setup, language, text, p)
            if problem is None and p["adapter_version"] < versions.get(p["adapter"], 0):
                problem = f"{p['adapter']} went back from version {versions[p['adapter']]} to {p['adapter_version']}"
            if problem:
                with lock:
                    report.wrong.append(f"{where}: {problem}")
            else:
                versions[p["adapter"]] = p["adapter_version"]
                with lock:
                    report.hashes.add(p["adapter_hash"])

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        versions: dict[str, int] = {}
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while time.monotonic() < stop_at:
                rows = [(language, rng.choice(setup.texts[language]))
                        for language in rng.sample(LANGUAGES, rng.choice((1, 1, 1, 2, 4)))]
                if rng.random() < 0.1:  # a language without an adapter: the fallback answers
                    rows.append(("sw", rng.choice(setup.texts[FALLBACK])))
                body = {"inputs": [{"text": text, "language": language} for language, text in rows]}
                answer = timed_predict(http, body, report.server_errors, lock, f"client {number}")
                if answer is None:
                    continue
                predictions, took = answer
                check(rows, predictions, versions, f"client {number}")
                with lock:
                    report.requests += 1
                    report.rows += len(rows)
                    report.latencies.append(took)

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for worker in workers:
        worker.start()
    with httpx.Client(base_url=server.url, timeout=120, headers=server.headers()) as admin:
        for when, method, name, body, wanted in admin_plan(setup):
            time.sleep(max(0.0, started + when * seconds - time.monotonic()))
            response = admin.request(method, f"/v1/adapters/{name}", json=body)
            detail = response.json().get("detail", "") if response.status_code != 200 else ""
            if wanted == 400 and "adapter_model.safetensors" not in detail:
                wanted = -400  # the refusal must name the file
            report.admin.append((f"{method} {name}", wanted, response.status_code, detail[:1000]))
    for worker in workers:
        worker.join(timeout=seconds + 120)
    report.seconds = time.monotonic() - started
    return report


def sigterm_in_flight(server: Server, setup: Setup, *, requests: int = 24, rows: int = 48, wait: float = 0.2) -> dict:
    """Requests of `rows` rows each, SIGTERM `wait` seconds after every one was sent: every one must get its complete,
    correct answer (uvicorn drains, then the batcher does). Returns counts by outcome, how many were answered only
    after the signal (in flight at SIGTERM) and the server's exit status."""
    import httpx

    outcomes: dict[str, int] = {}
    answered: list[float] = []
    lock = threading.Lock()
    sending = threading.Semaphore(0)
    chosen = [(language, text) for language in LANGUAGES for text in setup.texts[language]]

    def one(i: int) -> None:
        batch = [chosen[(i + j) % len(chosen)] for j in range(rows)]
        body = {"inputs": [{"text": text, "language": language} for language, text in batch]}
        with httpx.Client(timeout=120) as http:
            try:
                http.get(server.url + "/healthz")  # connected before the count: the POST goes on an open connection
            except httpx.HTTPError:
                pass
            sending.release()
            try:
                response = http.post(server.url + "/v1/predict", json=body)
                outcome = str(response.status_code)
                if response.status_code == 200:
                    predictions = response.json()["predictions"]
                    if len(predictions) != len(batch) or any(problem_of(setup, language, text, p)
                                                             for (language, text), p in zip(batch, predictions)):
                        outcome = "wrong"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            answered.append(time.monotonic())

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(requests)]
    for thread in threads:
        thread.start()
    for _ in threads:
        sending.acquire(timeout=60)
    time.sleep(wait)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=120)
    return {"outcomes": outcomes, "in_flight": sum(t > signalled for t in answered), "requests": requests,
            "exit": server.process.wait(timeout=60)}


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="how long the load runs (default 60); with --throughput, per level "
                                                      "(default 15, 2.5 with --quick)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--capacity", type=int, default=8, help="the server's adapter cache (2 makes it evict under load)")
    parser.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch, and the router's batch (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and the router (default 1)")
    parser.add_argument("--model", help="base model: a folder or a reference such as gemma3-270m (default: tiny offline BERT)")
    parser.add_argument("--steps", type=int, default=8, help="training steps of the adapters (default 8)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    parser.add_argument("--sigterm-rows", type=int, default=48, help="rows in each of the 24 requests in flight at SIGTERM")
    parser.add_argument("--throughput", action="store_true",
                        help="issue 10: requests/s and latency at --levels concurrent one-row clients, no adapter changes, "
                             "against the router's own batch throughput")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="--throughput's client counts (default 1 8 32)")
    parser.add_argument("--quick", action="store_true", help="with --throughput: tiny model, 2.5 s per level, levels 1 8 (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.steps, args.levels = None, 4, [1, 8]
    args.seconds = args.seconds or (2.5 if args.quick else 15 if args.throughput else 60)
    from common import print_hardware

    print_hardware("float32 (the server and the router run with precision no)")
    model = str(Path(args.model).resolve()) if args.model and Path(args.model).exists() else args.model

    with tempfile.TemporaryDirectory(prefix="xft-serve-load-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        setup = prepare(work, model, steps=args.steps)
        serve = lambda: start_server(setup.run, work / "server.log", fallback=FALLBACK, capacity=args.capacity,  # noqa: E731
                                     max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, threads=args.threads)
        if args.throughput:
            pool = [(language, text) for language in LANGUAGES for text in setup.texts[language]]
            return throughput(args, serve, setup.run, pool, lambda lang, text, p: problem_of(setup, lang, text, p),
                              describe=f"model {model or 'tiny offline BERT'}, adapters {', '.join(LANGUAGES)}",
                              fallback=FALLBACK)
        server = serve()
        try:
            report = run_load(server, setup, seconds=args.seconds, clients=args.clients)
            stats = server_stats(server.url, server.headers())
            shutdown = sigterm_in_flight(server, setup, rows=args.sigterm_rows)
        finally:
            server.stop()
    ok = report.ok and shutdown["outcomes"] == {"200": shutdown["requests"]}
    print(report.summary())
    print(f"adapter cache (capacity {args.capacity}): {stats['router'].get('loads')} loads, "
          f"{stats['router'].get('evictions')} evictions; mean rows per server batch {stats['server'].get('mean_batch_rows')}")
    print(f"SIGTERM with {shutdown['requests']} requests sent, {shutdown['in_flight']} answered after it: "
          f"{shutdown['outcomes']}, exit status {shutdown['exit']}")
    for line in (report.wrong + report.server_errors)[:10]:
        print("  ", line)
    for failure in report.admin_failures:
        print("   adapter change", failure)
    if args.json:
        args.json.write_text(json.dumps({**report.as_dict(), "ok": ok, "capacity": args.capacity, "clients": args.clients,
                                         "server_stats": stats, "sigterm": shutdown}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
