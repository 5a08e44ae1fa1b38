"""Threads probe: what the machine's cores give a LoRA training step, as threads of one process or as processes.

One training step of the plain loop's shape (`AutoModelForSequenceClassification`, peft LoRA r 16 on q/k/v/o,
AdamW; by default 16 rows of 32 tokens, SIB-200's size) is timed three ways, in one run:

  one thread        one process, `torch.set_num_threads(1)`, on one core
  N threads         one process, N intra-op threads (torch's default on an N-core machine)
  N processes       N one-thread processes side by side, one per core, each with 1/N of the rows: what DDP over
                    N CPU processes computes (docs/distributed.md), less its gradient all-reduce

and the script prints examples/s of each and the ratios. `xft train` uses torch's default threads; this says how
much the other way of using the cores could add.

    python benchmarks/threads_probe.py            # the embedded Gemma 3 270M
    python benchmarks/threads_probe.py --quick    # a tiny random Gemma 3 (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def child(args: argparse.Namespace) -> None:
    """Time `--steps` training steps of `--rows` rows on `--threads` threads; with `--go`, wait for that file first."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from xft_core.models import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=7)
    model.config.pad_token_id = 0
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(10, min(vocab, 20000), (args.rows, args.tokens))
    labels = torch.randint(0, 7, (args.rows,))

    def step() -> None:
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(2):
        step()
    if args.go:
        print("READY", flush=True)
        while not Path(args.go).exists():
            time.sleep(0.01)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - started
    print("RESULT " + json.dumps({"examples_per_second": args.steps * args.rows / seconds}), flush=True)


def spawn(args: argparse.Namespace, threads: int, rows: int, core: list[int] | None, go: Path | None) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", "--model", args.model, "--threads", str(threads), "--rows", str(rows),
               "--tokens", str(args.tokens), "--steps", str(args.steps)] + (["--go", str(go)] if go else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    preexec = (lambda: os.sched_setaffinity(0, core)) if core and hasattr(os, "sched_setaffinity") else None
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def result(process: subprocess.Popen) -> float:
    out, err = process.communicate()
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if process.returncode or line is None:
        raise SystemExit(f"probe process failed ({process.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
    return float(json.loads(line[len("RESULT "):])["examples_per_second"])


def side_by_side(args: argparse.Namespace, cores: list[int], work: Path) -> float:
    """N one-thread processes, one per core, timed over the same window: the sum of their examples/s."""
    go = work / "go"
    processes = [spawn(args, 1, max(1, args.rows // len(cores)), [core], go) for core in cores]
    for process in processes:  # each prints READY after its warm-up steps; then all start together
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY"):
                break
    go.touch()
    return sum(result(p) for p in processes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny random Gemma 3 and 2 steps (CI)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--rows", type=int, default=16, help="rows per step (default 16: the plain loop's batch)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per row (default 32: SIB-200's mean)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measure (default 6)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from common import print_hardware

    print_hardware("float32 (the plain loop's training step)")
    work = Path(tempfile.mkdtemp(prefix="xft-threads-"))
    if args.quick:
        from xft_core.testing import build_tiny_model

        args.model, args.rows, args.tokens, args.steps = str(build_tiny_model("gemma3", work / "tiny")), 4, 8, 2
    else:
        from xft_core.hooks.manager import get_plugin_manager
        from xft_core.models import resolve_model

        args.model = str(resolve_model(args.model, get_plugin_manager()))
    cores = usable_cores()
    n = len(cores)
    one = result(spawn(args, 1, args.rows, cores[:1], None))
    threads = result(spawn(args, n, args.rows, cores, None))
    processes = side_by_side(args, cores, work) if n > 1 else threads
    print(f"{n} cores; a LoRA training step of {args.rows} rows x {args.tokens} tokens")
    print(f"one thread          {one:8.2f} ex/s")
    print(f"{n} threads{'':<{10 - len(str(n))}}{threads:8.2f} ex/s")
    print(f"{n} processes{'':<{8 - len(str(n))}}{processes:8.2f} ex/s  (one thread each, {max(1, args.rows // n)} rows each)")
    print(f"threads / one thread      {threads / one:6.2f}x")
    print(f"processes / threads       {processes / threads:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
