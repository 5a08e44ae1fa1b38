"""One call that measures xft on the machine it runs on (one GPU in under 8 minutes) and prints one table.

    python benchmarks/device_check.py            # the embedded Gemma 3 270M on the GPU(s) (or the CPU) present
    python benchmarks/device_check.py --quick    # tiny models on the CPU: checks every part runs (CI)

Parts, each the benchmark script of its own (run as a subprocess, its JSON read back), so the figures are the ones
those scripts print and docs/benchmarks.md explains:

  training    benchmarks/train_throughput.py: the plain Hugging Face + peft loop under bf16 autocast (`plain-bf16`)
              against `xft train` (precision auto: bf16 on a GPU or a CPU with AVX512_BF16/AMX), one epoch of
              SIB-200 English, examples/s and dev macro-F1
  inference   benchmarks/inference_throughput.py: the plain peft loop against the router, rows/s, label agreement
  hot swap    benchmarks/hotswap.py: mixed-language batch / single-adapter batch / request by request
  serve       benchmarks/serve_load.py --throughput: a real `xft serve`, 1 and 8 one-row clients, against the
              router's own batch throughput
  DDP, FSDP   with 2 or more GPUs (or `--ddp-cpu N` processes on a CPU): `xft train` on N devices, under DDP
              (torchrun) and under FSDP2 (accelerate launch --config_file examples/accelerate/fsdp.yaml), against
              one device with the same global batch: examples/s, and the losses of every step, which must agree

What xft itself does on a GPU, which this exercises: SDPA attention (a CPU trains with eager attention, whose
backward is faster there), fused AdamW, bf16 autocast with the frozen base in bf16, batches copied from pinned
memory without blocking, no host sync per training step (the loss is read only when it is logged). The lines
above the table say which CPU flags, GPUs and precision the figures come from.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIB = ROOT.parent / "shared" / "data" / "sib200"
BUDGET = 8 * 60  # seconds, the whole full check on one GPU


def script(name: str, *args: str, timeout: float, threads: int = 0) -> tuple[dict, str, float]:
    """Run benchmarks/<name> with `args` and `--json`; (its JSON, the tail of its output, seconds)."""
    out = Path(tempfile.mkdtemp(prefix="xft-device-check-")) / "result.json"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(HERE / name), *args, "--json", str(out)], capture_output=True,
                              text=True, env=env, timeout=timeout, cwd=out.parent)
        tail = (done.stdout + done.stderr)[-1500:]
        code = done.returncode
    except subprocess.TimeoutExpired as exc:
        tail, code = f"timed out after {timeout:.0f} s: {str(exc.stdout or '')[-500:]}", -1
    seconds = time.perf_counter() - started
    if not out.is_file():
        return {"error": f"{name} exited {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}, tail, seconds
    return json.loads(out.read_text()), tail, seconds


# ------------------------------------------------------------------------------------------------ DDP
def ddp_child(args: argparse.Namespace) -> None:
    """Inside torchrun (or alone): `xft train` with the per-process batch; rank 0 prints its RESULT."""
    import xft_core

    run = xft_core.train({
        "name": "ddp", "output_dir": args.out, "model": args.model, "task": "sequence-classification", "strategy": "lora",
        "sampler": "proportional", "data_check": False,
        "data": {"path": args.data, "train_languages": ["eng"], "eval_languages": ["eng"], "dev_split": "dev"},
        "training": {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": 5e-4, "seed": 0,
                     "max_length": 128, "lr_scheduler": "constant", "warmup_ratio": 0.0, "log_every": 1,
                     "cpu": args.ddp_cpu > 0}}, progress=False)
    if run.accelerator.is_main_process:
        losses = [r["loss"] for r in run.history if "loss" in r]
        from xft_core.training.sharding import is_sharded

        print("RESULT " + json.dumps({"examples_per_second": run.examples_per_second, "processes": run.accelerator.num_processes,
                                      "sharding": "fsdp2" if is_sharded(run.unwrapped_model()) else "none",
                                      "losses": losses, "device": str(run.accelerator.device),
                                      "dev_macro_f1": run.metrics.get("eng", {}).get("macro_f1")}), flush=True)


def parallel_runs(model: str, data: Path, processes: int, global_batch: int, steps: int, cpu: bool,
                  timeout: float) -> dict[str, dict]:
    """One process with the global batch, then `processes` of global_batch / processes each: under DDP (torchrun)
    and under FSDP2 (`accelerate launch --config_file examples/accelerate/fsdp.yaml`). {"DDP": ..., "FSDP": ...}."""
    def one(n: int, launcher: list[str]) -> dict:
        out = tempfile.mkdtemp(prefix="xft-parallel-")
        child = [str(Path(__file__)), "--ddp-child", "--model", model, "--data", str(data), "--out", out,
                 "--steps", str(steps), "--batch-size", str(global_batch // n), "--ddp-cpu", str(processes if cpu else 0)]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        try:
            done = subprocess.run(launcher + child, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"error": f"{n} process(es) timed out after {timeout:.0f} s"}
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode or line is None:
            return {"error": f"{n} process(es) exited {done.returncode}: {(done.stderr or done.stdout)[-400:]}"}
        return json.loads(line[len("RESULT "):])

    single = one(1, [sys.executable])
    launchers = {
        "DDP": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)],
        "FSDP": [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file",
                 str(ROOT / "examples" / "accelerate" / "fsdp.yaml"), "--num_processes", str(processes),
                 "--main_process_port", "0"],
    }
    results = {}
    for kind, launcher in launchers.items():
        many = one(processes, launcher) if "error" not in single else single
        if "error" in many:
            results[kind] = many
            continue
        gap = max(abs(a - b) for a, b in zip(single["losses"], many["losses"])) if single["losses"] else math.nan
        results[kind] = {"one": single, "many": many, "processes": processes, "max_loss_difference": gap,
                         "ratio": many["examples_per_second"] / single["examples_per_second"]}
    return results


# ------------------------------------------------------------------------------------------------ table
def rows_of(results: dict) -> list[tuple[str, str, str, str]]:
    """(part, measure, value, against what) rows of the one table."""
    rows: list[tuple[str, str, str, str]] = []

    def failed(part: str, result: dict) -> bool:
        if "error" in result:
            rows.append((part, "FAILED", result["error"][:90], ""))
        return "error" in result

    train = results.get("training")
    if train is not None and not failed("training", train):
        run = next(iter(train["runs"].values()))
        plain, mine = run["plain-bf16"], run["xft"]
        rows.append(("training", "plain HF + peft loop, bf16 autocast", f"{plain['examples_per_second']:.2f} ex/s",
                     f"dev macro-F1 {100 * plain['dev_macro_f1']:.1f}"))
        rows.append(("training", f"xft train, precision {mine['precision']}", f"{mine['examples_per_second']:.2f} ex/s",
                     f"{mine['examples_per_second'] / plain['examples_per_second']:.2f}x the plain loop; "
                     f"dev macro-F1 {100 * mine['dev_macro_f1']:.1f}"))
    infer = results.get("inference")
    if infer is not None and not failed("inference", infer):
        rows.append(("inference", "plain peft loop, float32", f"{infer['plain_rows_per_second']:.1f} rows/s", ""))
        rows.append(("inference", f"xft router, precision {infer['precision']}", f"{infer['xft_rows_per_second']:.1f} rows/s",
                     f"{infer['ratio']:.2f}x; labels agree {100 * infer['agreement']:.1f}%"))
    swap = results.get("hot swap")
    if swap is not None and not failed("hot swap", swap):
        rows.append(("hot swap", "mixed 4-language batch", f"{swap['mixed']:.1f} rows/s",
                     f"{swap['mixed'] / swap['single']:.2f}x single-adapter (floor 0.9x)"))
        judged = "floor 4x" if "reported" not in swap else "floor 4x on GPUs; reported only on a CPU"
        rows.append(("hot swap", "request by request", f"{swap['per_request']:.1f} rows/s",
                     f"mixed is {swap['mixed'] / swap['per_request']:.2f}x ({judged})"))
        rows.append(("hot swap", "adapter switch, median", f"{swap['switch_ms'] * 1e3:.0f} us", "floor < 1 ms"))
    serve = results.get("serve")
    if serve is not None and not failed("serve", serve):
        for level in serve["levels"]:
            rows.append(("serve", f"{level['clients']} one-row client(s)", f"{level['requests_per_second']:.1f} req/s",
                         f"p50 {level['p50_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms, wrong {len(level['wrong'])}"))
        if serve.get("ratio") is not None:
            rows.append(("serve", "server at 8 clients / router batch", f"{serve['ratio']:.2f}", "floor 0.8"))
    for kind in ("DDP", "FSDP"):
        parallel = results.get(kind)
        if parallel is not None and not failed(kind, parallel):
            sharded = " (fsdp2)" if parallel["many"].get("sharding") == "fsdp2" else ""
            rows.append((kind, f"{parallel['processes']} processes{sharded}, same global batch",
                         f"{parallel['many']['examples_per_second']:.2f} ex/s",
                         f"{parallel['ratio']:.2f}x one process ({parallel['one']['examples_per_second']:.2f} ex/s); "
                         f"losses differ by <= {parallel['max_loss_difference']:.1e}"))
    return rows


def print_table(rows: list[tuple[str, str, str, str]], seconds: dict[str, float]) -> None:
    print()
    print(f"{'part':<10} {'measure':<40} {'value':>14}  against")
    for part, measure, value, against in rows:
        print(f"{part:<10} {measure:<40} {value:>14}  {against}")
    print()
    print("seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models on the CPU, every part (CI)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--parts", nargs="+", default=["training", "inference", "hot swap", "serve", "DDP"],
                        choices=["training", "inference", "hot swap", "serve", "DDP"])
    parser.add_argument("--ddp-cpu", type=int, default=0,
                        help="without GPUs: the DDP part (DDP and FSDP2) with this many CPU processes (gloo); --quick uses 2")
    parser.add_argument("--json", type=Path, help="also write every part's results to this file")
    parser.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_child:
        ddp_child(args)
        return 0

    import torch
    from common import auto_precision, print_hardware

    print_hardware(f"{auto_precision()} for xft (precision auto); plain training loop bf16 autocast; plain inference "
                   "loop float32; serve float32")
    gpus = torch.cuda.device_count()
    quick = ["--quick"] if args.quick else []
    threads = 1 if args.quick else 0
    timeout = 300 if args.quick else BUDGET
    seconds: dict[str, float] = {}
    results: dict[str, dict] = {}
    tails: dict[str, str] = {}
    plan = {
        "training": ("train_throughput.py", [*quick, "--epochs", "1", "--variants", "plain-bf16", "xft"]
                     + (["--threads", "1"] if args.quick else []) + ([] if args.quick else ["--model", args.model])),
        "inference": ("inference_throughput.py", [*quick] + ([] if args.quick else ["--model", args.model])),
        "hot swap": ("hotswap.py", [*quick, "--repeat", "2" if args.quick else "5"]
                     + (["--threads", "1"] if args.quick else ["--model", args.model])),
        "serve": ("serve_load.py", ["--throughput", *quick, "--levels", "1", "8"]
                  + ([] if args.quick else ["--model", args.model, "--seconds", "8"])),
    }
    for part, (name, part_args) in plan.items():
        if part not in args.parts:
            continue
        print(f"{part}: benchmarks/{name} {' '.join(part_args)}", flush=True)
        results[part], tails[part], seconds[part] = script(name, *part_args, timeout=timeout, threads=threads)
    processes = gpus if gpus > 1 else (args.ddp_cpu or (2 if args.quick else 0))
    if "DDP" in args.parts and processes > 1:
        print(f"DDP and FSDP: {processes} {'GPUs' if gpus > 1 else 'CPU processes'} against one, same global batch",
              flush=True)
        if args.quick:
            from train_throughput import synthetic

            from xft_core.testing import build_tiny_model

            work = Path(tempfile.mkdtemp(prefix="xft-device-check-"))
            model, data, steps, batch = str(build_tiny_model("gemma3", work / "tiny")), synthetic(work / "data"), 4, 8
        else:
            from xft_core.hooks.manager import get_plugin_manager
            from xft_core.models import resolve_model

            model, data, steps, batch = str(resolve_model(args.model, get_plugin_manager())), SIB, 24, 32
        started = time.perf_counter()
        results.update(parallel_runs(model, data, processes, batch, steps, cpu=gpus < 2, timeout=timeout))
        seconds["DDP and FSDP"] = time.perf_counter() - started
    elif "DDP" in args.parts:
        print("DDP and FSDP: skipped (one device; --ddp-cpu N runs them with N CPU processes)")
    print_table(rows_of(results), seconds)
    if args.json:
        from common import describe

        args.json.write_text(json.dumps({"hardware": describe(), "gpus": gpus, "results": results, "seconds": seconds},
                                        indent=2, default=str) + "\n")
    failed = [part for part, result in results.items() if "error" in result]
    for part in failed:
        print(f"\n{part} failed; its output ended:\n{tails.get(part, '')}", file=sys.stderr)
    if not args.quick and sum(seconds.values()) > BUDGET:
        print(f"note: the check took {sum(seconds.values()):.0f} s, over its {BUDGET} s budget", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
