"""Hot-swap serving on one base model: adapter switch cost, cold loads, and mixed-language batch throughput.

    python benchmarks/hotswap.py                      # the embedded Gemma 3 270M + 4 adapters trained here (~5 min)
    python benchmarks/hotswap.py --run runs/reviews   # a trained run with per-language adapters
    python benchmarks/hotswap.py --quick              # a small random Gemma 3 (4 layers, width 256): CI, ~1 min

Everything is measured against the same `Router` in one process:
- switch: what a single-adapter batch pays when the previous batch used another adapter, i.e. the strategy's
  `activate` between two loaded adapters (for LoRA: the active name set on the ~130 adapter layers found once),
  beside peft's own `set_adapter` (a walk over every module of the model; never called by the router);
- routing to an already-loaded adapter (`Router.load` on a hit: lock, LRU bookkeeping);
- cold load: an adapter read from disk onto the live base model;
- throughput of one mixed batch (4 languages, each row through its own adapter in ONE forward) against the
  same texts all through one adapter, the bare base model, and one request per row, each routed alone.

Floors (issue 10, on the embedded model): mixed batch >= 0.9x the single-adapter batch; every adapter switch
< 1 ms; on a GPU, mixed batch >= 4x request by request. On a CPU that last ratio is reported, not judged: a one-row
forward there is already compute-bound (~30 tokens are ~30 matmul rows), so batching saves the per-forward
overhead and little else, while a GPU runs one row mostly idle. The quick mode prints the same table; its floors
are not judged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

LANGUAGES = ["en", "de", "es", "zh"]
REVIEWS = ROOT / "examples" / "data" / "reviews"


def build_small_gemma3(folder: Path) -> Path:
    """A randomly initialised Gemma 3 text model: 4 layers, width 256, a BPE vocabulary of 2,000 trained on
    the review texts: small enough for CPUs, big enough that the matmuls, not Python, dominate a forward."""
    import torch
    import transformers as tf

    from xft_core.testing import DEFAULT_TEXTS, build_tokenizer

    texts = list(DEFAULT_TEXTS)
    for language in LANGUAGES:
        texts += [line for line in (REVIEWS / f"{language}.train.jsonl").read_text(encoding="utf-8").splitlines()]
    tokenizer = build_tokenizer(texts, folder, kind="bpe", role="decoder", vocab_size=2000)
    config = tf.Gemma3TextConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=1, head_dim=64, query_pre_attn_scalar=64, sliding_window=64,
        max_position_embeddings=512, layer_types=["sliding_attention", "full_attention"] * 2, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def train_adapters(model: str, out: Path, steps: int) -> Path:
    """Per-language LoRA adapters for en/de/es/zh: a few steps each (the benchmark needs distinct weights,
    not accuracy)."""
    from xft_core.training import train

    config = {
        "name": "hotswap", "output_dir": str(out), "model": str(model), "task": "sequence-classification",
        "strategy": "lora", "strategy_options": {"r": 8, "alpha": 16}, "adapters": "per_language", "sampler": "round_robin",
        "data": {"path": str(REVIEWS), "train_languages": LANGUAGES, "max_eval_examples": 8},
        "training": {"max_steps": steps, "batch_size": 8, "learning_rate": 1e-3, "precision": "no", "seed": 1,
                     "max_length": 64},
        "data_check": False,
    }
    return train(config, progress=False).paths.root


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def interleaved_rows_per_second(calls: dict, rows: int, repeat: int) -> dict[str, float]:
    """Median rows/s of each call, timed in rounds (one of each per round), so a change in the machine's load
    during the run hits every figure alike instead of skewing the ratios."""
    for call in calls.values():
        call()  # warm-up: first-use allocations, peft hooks, tokenizer caches
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: rows / statistics.median(samples) for name, samples in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run folder with per-language adapters (default: build and train)")
    parser.add_argument("--model", default="gemma3-270m",
                        help="base model to train the 4 adapters on (default: the embedded Gemma 3 270M)")
    parser.add_argument("--quick", action="store_true",
                        help="a small random Gemma 3 instead of --model, fewer repeats; floors not judged (CI)")
    parser.add_argument("--steps", type=int, default=8, help="training steps of the 4 adapters (default 8)")
    parser.add_argument("--work", type=Path,
                        help="keep the built model and run here and reuse them next time (default: a temporary folder)")
    parser.add_argument("--rows", type=int, default=64, help="rows per batch (default 64, 16 per language)")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads (default: torch's choice; 1 is steadier on a busy machine)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="rows per forward inside one request (the router's batch_size, default 32)")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions per throughput figure (median)")
    parser.add_argument("--precision", default="auto", choices=["no", "auto", "bf16", "fp16"],
                        help="the router's forward precision for every measure "
                             "(default auto: bf16 where the CPU/GPU supports it)")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)

    import torch

    from xft_core.inference.router import Router
    from xft_core.models import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xft-hotswap-") as scratch:
        work = args.work or Path(scratch)
        run = args.run
        if run is None and args.work and (work / "runs" / "hotswap" / "run.json").is_file():
            run = work / "runs" / "hotswap"
        if run is None:
            model = build_small_gemma3(work / "gemma3-small") if args.quick else args.model
            run = train_adapters(str(model), work / "runs", args.steps)
        prepared = time.perf_counter() - started
        router = Router.from_run(run, capacity=8, batch_size=args.batch_size, max_length=128, precision=args.precision)
        from common import print_hardware

        print_hardware(router.precision)
        names = sorted(router.registered())
        languages = [lang for lang in LANGUAGES if lang in router.routes()] or sorted(router.routes())
        if len(languages) < 2:
            print(f"need adapters for at least 2 languages; {run} serves {sorted(router.routes())}")
            return 2
        for name in names:
            router.load(name)
        texts, row_languages = batch(languages, args.rows)
        print(f"base {router.base.model_path.name}: "
              f"{sum(p.numel() for p in router.base.model.parameters()) / 1e6:.1f} M parameters, "
              f"adapters {', '.join(names)}; {args.rows} rows in forwards of {args.batch_size}, {len(languages)} languages; "
              f"threads {torch.get_num_threads()}; precision {router.precision}; "
              f"setup {prepared:.0f} s")
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load > cores and torch.get_num_threads() > 1:
            print(f"warning: load average {load:.1f} on {cores} cores: other processes compete for the CPU, and torch's "
                  "worker threads then wait on each other; --threads 1 gives steadier figures")
        report = measure(router, texts, row_languages, languages, 2 if args.quick else args.repeat,
                         gpu=next(router.model.parameters()).device.type == "cuda")
    report["precision"] = router.precision
    print_report(report)
    if args.json:
        import json

        from common import describe

        args.json.write_text(json.dumps({**report, "hardware": describe()}, indent=2) + "\n", encoding="utf-8")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if report["floors_met"] or args.quick else 1


def batch(languages: list[str], rows: int) -> tuple[list[str], list[str]]:
    """`rows` review texts, languages interleaved (en, de, es, zh, en, ...), so consecutive requests differ."""
    import json

    pools = {}
    for language in languages:
        path = REVIEWS / f"{language}.test.jsonl"
        pools[language] = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() \
            else [f"sample text {i}" for i in range(rows)]
    texts, row_languages = [], []
    for i in range(rows):
        language = languages[i % len(languages)]
        texts.append(pools[language][(i // len(languages)) % len(pools[language])])
        row_languages.append(language)
    return texts, row_languages


def measure(router, texts: list[str], row_languages: list[str], languages: list[str], repeat: int, *,
            gpu: bool = False) -> dict:
    """Every figure of the table; `floors` holds the floors judged on this device (mixed / request by request only
    on a GPU), `reported` what is printed beside them without a verdict."""
    n = len(texts)
    first = router.routes()[languages[0]]
    second = router.routes()[languages[1]]
    # cached swap 1: route to an adapter that is already loaded (lock, LRU bookkeeping)
    route = []
    for i in range(2000):
        name = router.routes()[languages[i % len(languages)]]
        t = time.perf_counter()
        router.load(name)
        route.append(time.perf_counter() - t)
    # switch: the strategy's activate between two loaded adapters (the router's single-adapter path) ...
    model, strategy = router.model, router.strategy
    pair = [router.cache.slot(first), router.cache.slot(second)]
    strategy.activate(model, pair[1], None)  # the first switch finds the adapter layers once: not a switch's cost
    switch = []
    for i in range(2000):
        t = time.perf_counter()
        strategy.activate(model, pair[i % 2], None)
        switch.append(time.perf_counter() - t)
    # ... against peft's own set_adapter, the walk over every module the router no longer pays
    set_adapter = []
    for i in range(100):
        t = time.perf_counter()
        model.set_adapter(pair[i % 2], inference_mode=True)
        set_adapter.append(time.perf_counter() - t)
    # cold load from disk onto the live base (no eviction: capacity is not reached)
    cold = []
    for _ in range(8):
        router.unload(second)
        t = time.perf_counter()
        router.load(second)
        cold.append(time.perf_counter() - t)

    def one_by_one():
        for text, language in zip(texts, row_languages):
            router.predict([text], language)

    forwards = router.stats.forwards
    rate = interleaved_rows_per_second({
        "mixed": lambda: router.predict(texts, row_languages),
        "single": lambda: router.predict(texts, adapters=first),
        "base": lambda: router.predict(texts, adapters="__base__"),
        "per_request": one_by_one,
    }, n, repeat)
    assert router.stats.forwards - forwards >= n * (1 + repeat), "one forward per request"
    mixed, single, base, per_request = rate["mixed"], rate["single"], rate["base"], rate["per_request"]
    report = {
        "route_ms": median_ms(route), "switch_ms": median_ms(switch), "switch_max_ms": max(switch) * 1e3,
        "set_adapter_ms": median_ms(set_adapter), "cold_ms": median_ms(cold),
        "mixed": mixed, "single": single, "base": base, "per_request": per_request,
    }
    report["floors"] = {
        "mixed batch / single-adapter batch >= 0.9": mixed / single >= 0.9,
        "adapter switch (median) < 1 ms": report["switch_ms"] < 1,
        "routing to a loaded adapter < 1 ms": report["route_ms"] < 1,
    }
    per_request_floor = "mixed batch / request by request >= 4"
    if gpu:
        report["floors"][per_request_floor] = mixed / per_request >= 4
    else:  # a CPU's one-row forward is compute-bound already: reported, not judged (module docstring)
        report["reported"] = {f"{per_request_floor} (judged on GPUs only)": mixed / per_request >= 4}
    report["floors_met"] = all(report["floors"].values())
    return report


def print_report(r: dict) -> None:
    print()
    print(f"{'measure':<52}{'value':>14}")
    print(f"{'adapter switch: strategy.activate (median)':<52}{r['switch_ms'] * 1e3:>11.1f} us")
    print(f"{'adapter switch: strategy.activate (slowest of 2000)':<52}{r['switch_max_ms'] * 1e3:>11.1f} us")
    print(f"{'for comparison: peft set_adapter (median)':<52}{r['set_adapter_ms'] * 1e3:>11.1f} us")
    print(f"{'route to a loaded adapter (median)':<52}{r['route_ms'] * 1e3:>11.1f} us")
    print(f"{'cold load from disk (median)':<52}{r['cold_ms']:>11.1f} ms")
    print(f"{'mixed 4-language request (all rows, own adapters)':<52}{r['mixed']:>9.1f} rows/s")
    print(f"{'single-adapter batch, same texts':<52}{r['single']:>9.1f} rows/s")
    print(f"{'bare base model, same texts':<52}{r['base']:>9.1f} rows/s")
    print(f"{'request by request (one row each, adapter swaps)':<52}{r['per_request']:>9.1f} rows/s")
    print()
    print(f"mixed / single-adapter      {r['mixed'] / r['single']:6.2f}x   (floor 0.9x)")
    print(f"mixed / request-by-request  {r['mixed'] / r['per_request']:6.2f}x   "
          f"({'floor 4x' if 'reported' not in r else 'floor 4x on GPUs; reported only on a CPU'})")
    print(f"peft set_adapter / switch   {r['set_adapter_ms'] / r['switch_ms']:6.0f}x")
    print(f"single-adapter / base       {r['single'] / r['base']:6.2f}x   (LoRA overhead of serving)")
    print(f"cold load / cached routing  {r['cold_ms'] / r['route_ms']:8.0f}x")
    for name, met in r["floors"].items():
        print(f"  {'ok  ' if met else 'MISS'} {name}")
    for name, met in r.get("reported", {}).items():
        print(f"  {'(ok)' if met else '(-) '} {name}: {r['mixed'] / r['per_request']:.2f}x, not judged on a CPU")


if __name__ == "__main__":
    sys.exit(main())
