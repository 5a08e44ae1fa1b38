"""Where a LoRA training step's time goes, and what each of xft's fast paths is worth: one run, one process.

The step is xft's own (`prepare` -> the strategy's model -> forward under the run's autocast, backward, AdamW),
on the same batches of SIB-200 English for every variant. Each variant turns ONE fast path off again; the
variants take turns (`--repeat` rounds), and the best round of each is compared with all paths on:

  all on           what `xft train` runs
  peft LoRA        peft's own `lora.Linear.forward` (input cast to float32 and back, scale and add apart)
  model RMSNorm    the model's own RMSNorm (autograd over ~9 element-wise operations)
  SDPA attention   scaled_dot_product_attention (on a CPU its flash kernel's backward)
  full LM head     (prompt-classification) the LM head over the whole vocabulary, then the label words' logits
  other AdamW      the AdamW kernel xft does not pick here: the fused one on a CPU, the for-loop on a GPU
  all off          the four model paths above off at once: the step as xft ran it before them

Times are the process's CPU time (`time.process_time`) with one thread by default, so other jobs on a shared
machine change them little; wall time is printed beside. Then torch's profiler over `--profile-steps` steps with
every fast path on, and over as many with all of them off, gives the top operators and their shares.

    python benchmarks/train_profile.py                                   # Gemma 3 270M, sequence-classification
    python benchmarks/train_profile.py --task prompt-classification      # the verbalizer (label words)
    python benchmarks/train_profile.py --quick                           # a tiny model (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"
VARIANTS = ("all on", "peft LoRA", "model RMSNorm", "SDPA attention", "full LM head", "other AdamW", "all off")
MODEL_PATHS = ("peft LoRA", "model RMSNorm", "SDPA attention", "full LM head")


def build(model: str, data: Path, task: str, batch_size: int, steps: int) -> tuple[Any, list[dict[str, Any]]]:
    """xft's prepared run (model with every fast path, optimizer not yet built) and `steps` batches."""
    from xft_core.config import load_config
    from xft_core.training.loop import next_batch
    from xft_core.training.prepare import prepare

    config = load_config({
        "name": "profile", "output_dir": tempfile.mkdtemp(prefix="xft-profile-"), "model": model, "task": task,
        "strategy": "lora", "sampler": "proportional", "data_check": False,
        "data": {"path": str(data), "train_languages": ["eng"], "eval_languages": ["eng"], "dev_split": "dev"},
        "training": {"max_steps": 1000, "batch_size": batch_size, "learning_rate": 5e-4, "max_length": 128, "seed": 0,
                     "lr_scheduler": "constant", "warmup_ratio": 0.0}})
    run = prepare(config)
    run.model.train()
    return run, [next_batch(run, "eng") for _ in range(steps)]


@contextlib.contextmanager
def without(run: Any, variant: str):
    """The model with the fast path `variant` names turned off (`all off`: every model path), back on afterwards."""
    if variant == "all off":
        with contextlib.ExitStack() as stack:
            for path in MODEL_PATHS:
                stack.enter_context(without(run, path))
            yield
        return
    model = run.model
    undone: list[tuple[Any, str, Any]] = []
    patched = None
    if variant == "peft LoRA":
        from xft_lora.fused import fused_forward

        undone = [(m, "forward", m.__dict__.pop("forward")) for m in model.modules()
                  if getattr(m.__dict__.get("forward"), "__func__", None) is fused_forward]
    elif variant == "model RMSNorm":
        from xft_core.models import fast_paths

        ours = (fast_paths._gemma_forward, fast_paths._llama_forward)
        undone = [(m, "forward", m.__dict__.pop("forward")) for m in model.modules()
                  if getattr(m.__dict__.get("forward"), "__func__", None) in ours]
    elif variant == "SDPA attention":
        configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
        undone = [(c, "_attn_implementation", c._attn_implementation) for c in configs.values()
                  if c._attn_implementation == "eager"]
        for config, _, _ in undone:
            config._attn_implementation = "sdpa"
    elif variant == "full LM head":
        import xft_verbalizer.model as verbalizer

        patched = verbalizer._is_plain_linear
        verbalizer._is_plain_linear = lambda module: False
    try:
        yield
    finally:
        for target, name, value in undone:
            if name == "forward":
                target.forward = value
            else:
                setattr(target, name, value)
        if patched is not None:
            import xft_verbalizer.model as verbalizer

            verbalizer._is_plain_linear = patched


def optimizer(run: Any, other: bool) -> Any:
    """xft's AdamW for this device (`make_optimizer`), or with `other` the kernel it does not pick."""
    import torch

    from xft_core.training.loop import make_optimizer

    mine = make_optimizer(run.model, run.config, run.accelerator.device.type)
    if not other:
        return mine
    fused = not mine.defaults.get("fused")
    return torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=5e-4, fused=fused or None)


def steps(run: Any, batches: list[dict[str, Any]], opt: Any) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, mean loss) of one optimizer step per batch."""
    from xft_core.util.precision import autocast

    cpu, wall, losses = time.process_time(), time.perf_counter(), []
    for batch in batches:
        with autocast(run.accelerator.mixed_precision, run.accelerator.device):
            loss = run.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return time.process_time() - cpu, time.perf_counter() - wall, sum(losses) / len(losses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny Gemma 3 on a synthetic stand-in, 2 steps, sequence-classification (CI)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--task", default="sequence-classification",
                        choices=["sequence-classification", "prompt-classification"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per timed round (default 6)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each variant counts (default 3)")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps under torch's profiler (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    parser.add_argument("--top", type=int, default=12, help="operators listed from the profile")
    args = parser.parse_args(argv)

    import torch
    from common import print_hardware

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="xft-profile-"))
    if args.quick:
        from train_throughput import synthetic

        from xft_core.testing import build_tiny_model

        model, data = str(build_tiny_model("gemma3", work / "tiny")), synthetic(work / "data")
        args.steps, args.repeat, args.profile_steps, args.batch_size = 2, 1, 1, 8
        args.task = "sequence-classification"  # the tiny tokenizer gives SIB's topics one shared first token
    else:
        from xft_core.hooks.manager import get_plugin_manager
        from xft_core.models import resolve_model

        model, data = str(resolve_model(args.model, get_plugin_manager())), SIB
    run, batches = build(model, data, args.task, args.batch_size, args.steps)
    print_hardware(run.accelerator.mixed_precision)
    positions = sum(b["input_ids"].numel() for b in batches) / len(batches)
    print(f"{Path(model).name}, {args.task}, LoRA at full depth: {args.steps} steps of {args.batch_size} rows "
          f"({positions:.0f} token positions per step), {torch.get_num_threads()} threads")
    variants = [v for v in VARIANTS if v != "full LM head" or args.task == "prompt-classification"]
    mine, other = optimizer(run, False), optimizer(run, True)
    steps(run, batches[:1], mine)  # warm-up: first-call costs are no variant's
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(args.repeat):
        for variant in variants:
            with without(run, variant):
                result = steps(run, batches, other if variant == "other AdamW" else mine)
            if variant not in best or result[0] < best[variant][0]:
                best[variant] = result
    on = best["all on"][0]
    print(f"\n{'variant':<18}{'CPU s/step':>11}{'wall s/step':>12}{'all on is':>11}   mean loss")
    for variant in variants:
        cpu, wall, loss = best[variant]
        print(f"{variant:<18}{cpu / args.steps:>11.3f}{wall / args.steps:>12.3f}{cpu / on:>10.2f}x   {loss:.4f}")
    for variant in ("all on", "all off") if args.profile_steps else ():
        with without(run, variant), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            steps(run, batches[: args.profile_steps], mine)
        events = [e for e in profile.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\ntop operators, {variant} ({args.profile_steps} steps; share of self CPU time under the profiler):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            print(f"  {e.key[:48]:<48}{100 * e.self_cpu_time_total / total:6.1f}%  {e.count:>7} calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
