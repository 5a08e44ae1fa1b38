"""Memory of a LoRA training run over a float32, a bfloat16 and a 4-bit NF4 base (QLoRA), with its speed and quality.

Each base dtype trains the same LoRA adapter (`xft train`, SIB-200 English, the same steps and seed) in a process
of its own and reports:

  weights      bytes of the model's parameters and buffers once the base is in its dtype (what a GPU would hold
               before activations; for NF4 the packed 4-bit weights and their scales)
  RSS start    the process's resident memory when training starts (model loaded, quantized, data encoded)
  peak RSS     the process's peak resident memory over the whole run; on a CPU it includes loading the base in full
               precision before it is cast or quantized (the load peak)
  GPU peak     torch.cuda.max_memory_allocated, where a GPU ran it
  ex/s         training examples per second (CPU time per example beside it with --threads 1)
  dev F1       dev macro-F1 after training, and its difference to the bfloat16 base (reported, not hidden)

Needs bitsandbytes for nf4 (`pip install 'xft[qlora]'`); without it the nf4 row says so and the others still run.

    python benchmarks/qlora_memory.py                  # Gemma 3 270M, 44 steps of 16 (one epoch)
    python benchmarks/qlora_memory.py --quick          # a tiny model (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"
DTYPES = ("float32", "bfloat16", "nf4")


def rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def weight_bytes(model) -> int:
    """Bytes of every parameter and buffer, counted once (tied weights once); 4-bit layers' scales included."""
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            tensors += [t for t in (state.absmax, getattr(state, "code", None)) if t is not None]
            nested = getattr(state, "state2", None)
            if nested is not None:
                tensors += [t for t in (nested.absmax, nested.code) if t is not None]
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def child(args: argparse.Namespace) -> None:
    import torch

    import xft_core
    from xft_core.hooks import hookimpl
    from xft_core.hooks.manager import get_plugin_manager

    if args.threads:
        torch.set_num_threads(args.threads)

    class Probe:
        start: dict = {}

        @hookimpl
        def xft_before_train(self, run):
            self.start = {"weights_mb": weight_bytes(run.unwrapped_model()) / 2**20, "rss_start_mb": rss_mb(),
                          "cpu": time.process_time()}

        @hookimpl
        def xft_after_step(self, run, step, logs):
            self.start["cpu_end"] = time.process_time()

    probe, pm = Probe(), get_plugin_manager()
    pm.register(probe, name="memory-probe")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = xft_core.train({
        "name": "memory", "output_dir": tempfile.mkdtemp(prefix="xft-qlora-"), "model": args.model,
        "task": "sequence-classification", "strategy": "lora", "sampler": "proportional", "data_check": False,
        "data": {"path": args.data, "train_languages": ["eng"], "eval_languages": ["eng"], "dev_split": "dev"},
        "training": {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
                     "max_length": 128, "lr_scheduler": "constant", "warmup_ratio": 0.0, "log_every": 1000,
                     "eval_batch_size": 32, "base_dtype": args.base_dtype, "precision": args.precision}},
        pm=pm, progress=False)
    examples = run.step * args.batch_size
    result = {**probe.start, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "examples_per_second": run.examples_per_second,
              "examples_per_cpu_second": examples / max(probe.start.get("cpu_end", 0) - probe.start["cpu"], 1e-9),
              "dev_macro_f1": run.metrics["eng"]["macro_f1"], "precision": run.accelerator.mixed_precision,
              "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}
    from common import emit_result

    emit_result(result)


def run_one(base_dtype: str, args: argparse.Namespace, model: str, data: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--base-dtype", base_dtype, "--model", model, "--data", str(data),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--seed", str(args.seed), "--threads", str(args.threads), "--precision", args.precision]
    from common import run_child

    result, done = run_child(command, args.threads)
    if result is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0][:300]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny Gemma 3 on a synthetic stand-in, 4 steps (CI)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=44, help="training steps (default 44: one epoch of SIB English)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", default="auto", help="training.precision of every run (default auto)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-dtype", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from common import auto_precision, print_hardware

    print_hardware(f"{auto_precision() if args.precision == 'auto' else args.precision} (training.precision "
                   f"{args.precision}); the base's frozen weights in each row's dtype")
    work = Path(tempfile.mkdtemp(prefix="xft-qlora-"))
    if args.quick:
        from train_throughput import synthetic

        from xft_core.testing import build_tiny_model

        model, data, args.steps, args.batch_size = str(build_tiny_model("gemma3", work / "tiny")), synthetic(work / "d"), 4, 8
    else:
        from xft_core.hooks.manager import get_plugin_manager
        from xft_core.models import resolve_model

        model, data = str(resolve_model(args.model, get_plugin_manager())), SIB
    print(f"{Path(model).name}: LoRA (xft defaults), {args.steps} steps of {args.batch_size}, one process per base dtype")
    results = {dtype: run_one(dtype, args, model, data) for dtype in args.dtypes}
    reference = results.get("bfloat16", {}).get("dev_macro_f1")
    print(f"\n{'base':<10}{'weights MB':>11}{'RSS start MB':>13}{'peak RSS MB':>12}{'GPU peak MB':>12}{'ex/s':>8}"
          f"{'ex/CPU-s':>9}{'dev F1':>8}{'vs bf16':>9}")
    for dtype, r in results.items():
        if "error" in r:
            print(f"{dtype:<10} failed: {r['error']}")
            continue
        gpu = f"{r['gpu_peak_mb']:.0f}" if r.get("gpu_peak_mb") is not None else "-"
        versus = f"{100 * (r['dev_macro_f1'] - reference):+.1f}" if reference is not None else "-"
        print(f"{dtype:<10}{r['weights_mb']:>11.2f}{r['rss_start_mb']:>13.0f}{r['peak_rss_mb']:>12.0f}{gpu:>12}"
              f"{r['examples_per_second']:>8.2f}{r['examples_per_cpu_second']:>9.2f}{100 * r['dev_macro_f1']:>8.1f}"
              f"{versus:>9}")
    if args.json:
        from common import describe

        args.json.write_text(json.dumps({"hardware": describe(), "steps": args.steps, "results": results}, indent=2) + "\n")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
