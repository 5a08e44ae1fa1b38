"""Training throughput: `xft train` against the loop anyone would write, on the same examples and epochs, in one run.

(a) plain   AutoModelForSequenceClassification + peft LoRA r 16 on the attention projections, AdamW, batch 16,
            dynamic padding (DataCollatorWithPadding over shuffled rows), fp32: the Hugging Face tutorial loop.
            `plain-bf16` is the same loop under bf16 autocast, as the Trainer runs it with `bf16=True`.
(b) xft     `xft train` with its defaults (task sequence-classification, LoRA on every projection, length-grouped
            batches, precision auto) and the plain loop's constant learning rate, at full depth and with
            `top_layers: 6` (frozen-prefix cache on); `xft-default-lr` keeps xft's warmup + linear decay.
(c) full    `xft train` with strategy full (every weight trains): its peak RSS beside LoRA's.

Each variant runs in its own process (so peak RSS is its own) and reports examples/s of its training steps
(evaluation excluded), examples per CPU-second of the same steps (the process's CPU time: with `--threads 1` on a
machine shared with other jobs it is the figure that waiting for a core does not change), the padding share of its
batches, its peak RSS and the dev macro-F1 after training. The lines above the table say which CPU flags (bf16,
AMX), threads and precision the figures come from.
Every variant trains 3 epochs by default (the Trainer's default), so `top_layers`' frozen-prefix cache pays from
the second; with `--seeds 0 1 2` it repeats everything per seed and prints the means (the dev set has 99 rows, so
one seed's F1 moves by several points).

    python benchmarks/train_throughput.py --seeds 0 1 2  # the embedded Gemma 3 270M on SIB-200 English
    python benchmarks/train_throughput.py --threads 1 --variants plain xft   # one core, CPU time beside wall time
    python benchmarks/train_throughput.py --quick        # a tiny model on a synthetic stand-in (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"
VARIANTS = ("plain", "plain-bf16", "xft", "xft-top6", "xft-default-lr", "full")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def synthetic(folder: Path, seed: int = 0) -> Path:
    """A stand-in of SIB-200's shape: 7 topics, sentence lengths spread like SIB's English (8 to 60 words)."""
    rng = random.Random(seed)
    words = "the of and to in a is that for on with as by at from this was are it be".split()
    topics = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 96), ("dev", 32)):
        with (folder / f"eng.{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in range(n):
                topic = topics[i % len(topics)]
                text = " ".join([topic.split("/")[0]] + [rng.choice(words) for _ in range(rng.randint(8, 60))])
                handle.write(json.dumps({"text": text, "label": topic}) + "\n")
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- variants
def plain(model_path: str, data: Path, epochs: int, batch_size: int, lr: float, max_length: int, seed: int,
          *, bf16: bool = False) -> dict:
    """The loop from the tutorials: tokenise, shuffle, pad each batch to its longest row, LoRA on attention; with
    `bf16`, each forward under bf16 autocast (the Trainer's `bf16=True`)."""
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from xft_metrics import macro_f1

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train, dev = read(data / "eng.train.jsonl"), read(data / "eng.dev.jsonl")
    labels = sorted({r["label"] for r in train})
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(labels))
    model.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])).to(device)
    encode = lambda rows: [{**tokenizer(r["text"], truncation=True, max_length=max_length),  # noqa: E731
                            "labels": labels.index(r["label"])} for r in rows]
    features, collator = encode(train), DataCollatorWithPadding(tokenizer)
    loader = torch.utils.data.DataLoader(features, batch_size=batch_size, shuffle=True, collate_fn=collator,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    examples, tokens, padding, seconds, cpu = 0, 0, 0, 0.0, 0.0
    for _ in range(epochs):
        for batch in loader:
            started, cpu_started = time.perf_counter(), time.process_time()
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if device.type == "cuda":
                torch.cuda.synchronize()  # the tutorial loop logs loss.item() every few steps; this times each step
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            examples += len(batch["labels"])
            tokens, padding = tokens + batch["attention_mask"].numel(), padding + int((batch["attention_mask"] == 0).sum())
    model.eval()
    predicted = []
    with torch.no_grad(), autocast():
        for start in range(0, len(dev), 32):
            batch = collator([{k: v for k, v in f.items() if k != "labels"} for f in encode(dev[start : start + 32])])
            batch = {k: v.to(device) for k, v in batch.items()}
            predicted += [labels[i] for i in model(**batch).logits.argmax(-1).tolist()]
    return {"examples_per_second": examples / seconds, "examples_per_cpu_second": examples / cpu,
            "padding_share": padding / tokens, "examples": examples, "precision": "bf16" if bf16 else "no",
            "dev_macro_f1": macro_f1(predicted, [r["label"] for r in dev])}


def with_xft(model_path: str, data: Path, epochs: int, batch_size: int, lr: float, max_length: int, seed: int,
             *, top_layers: int = 0, strategy: str = "lora", schedule: str = "constant") -> dict:
    import xft_core
    from xft_core.hooks import hookimpl
    from xft_core.hooks.manager import get_plugin_manager

    class CpuClock:
        """The process's CPU time from the first step's start to the last step's end (evaluation runs after it)."""

        started = ended = 0.0

        @hookimpl
        def xft_before_train(self, run):
            self.started = time.process_time()

        @hookimpl
        def xft_after_step(self, run, step, logs):
            self.ended = time.process_time()

    clock, pm = CpuClock(), get_plugin_manager()
    pm.register(clock, name="cpu-clock")
    rows = len(read(data / "eng.train.jsonl"))
    options = {"top_layers": top_layers} if top_layers else {}
    out = tempfile.mkdtemp(prefix="xft-throughput-")
    run = xft_core.train({
        "name": "throughput", "output_dir": out, "model": model_path, "task": "sequence-classification",
        "strategy": strategy, "strategy_options": options, "sampler": "proportional",
        "data": {"path": str(data), "train_languages": ["eng"], "eval_languages": ["eng"], "dev_split": "dev"},
        "training": {"max_steps": epochs * math.ceil(rows / batch_size), "batch_size": batch_size, "learning_rate": lr,
                     "max_length": max_length, "seed": seed, "log_every": 1000, "eval_batch_size": 32,
                     # the plain loop's constant learning rate: the comparison is of speed at the same optimisation.
                     # (xft's default warmup 10% + linear decay cost 7.8 dev macro-F1 points in this one-epoch,
                     # 44-step run; docs/benchmarks.md)
                     "lr_scheduler": schedule, "warmup_ratio": 0.0 if schedule == "constant" else 0.1},
        "data_check": False}, pm=pm, progress=False)
    return {"examples_per_second": run.examples_per_second, "padding_share": run.padding_share,
            "examples_per_cpu_second": run.step * batch_size / max(clock.ended - clock.started, 1e-9),
            "examples": run.step * batch_size, "dev_macro_f1": run.metrics["eng"]["macro_f1"],
            "precision": run.accelerator.mixed_precision}


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length, seed=args.seeds[0])
    data = Path(args.data)
    if args.variant in ("plain", "plain-bf16"):
        result = plain(args.model, data, **common, bf16=args.variant == "plain-bf16")
    elif args.variant == "full":
        result = with_xft(args.model, data, **{**common, "lr": args.lr / 10}, strategy="full")
    elif args.variant == "xft-default-lr":
        result = with_xft(args.model, data, **common, schedule="linear")
    else:
        result = with_xft(args.model, data, **common, top_layers=6 if args.variant == "xft-top6" else 0)
    from common import emit_result

    emit_result({**result, "peak_rss_mb": peak_rss_mb()})


def run_variant(variant: str, model: str, data: Path, args: argparse.Namespace, seed: int) -> dict:
    """One variant in a process of its own (so its peak RSS is its own); its RESULT line, parsed."""
    command = [sys.executable, __file__, "--variant", variant, "--model", model, "--data", str(data),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--max-length", str(args.max_length), "--seeds", str(seed), "--threads", str(args.threads)]
    from common import run_child

    result, done = run_child(command, args.threads)
    if result is None:
        print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"variant {variant} (seed {seed}) failed ({done.returncode})")
    return result


def against_plain(runs: list[dict], rate: str = "examples_per_second") -> list[tuple[str, float, float]]:
    """(variant, mean rate / plain's mean rate, mean of per-run dev macro-F1 differences in points); `rate` is
    examples_per_second or examples_per_cpu_second."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    plain_rate = mean([r["plain"][rate] for r in runs])
    return [(variant, mean([r[variant][rate] for r in runs]) / plain_rate,
             mean([100 * (r[variant]["dev_macro_f1"] - r["plain"]["dev_macro_f1"]) for r in runs]))
            for variant in runs[0] if variant != "plain"]


# --------------------------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, synthetic data: checks the script in seconds")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every variant (default 3, the Trainer's default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="run every variant once per seed and print the means too (the dev set is 99 rows)")
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "plain-bf16"], choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per variant (0: torch's default)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.variant:
        child(args)
        return 0
    from common import auto_precision, print_hardware

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print_hardware(f"{auto_precision('cpu')} for xft (training.precision auto); the plain loop float32, "
                   "plain-bf16 bf16 autocast")
    work = Path(tempfile.mkdtemp(prefix="xft-throughput-"))
    if args.quick:
        from xft_core.testing import build_tiny_model

        model, data, args.epochs = str(build_tiny_model("gemma3", work / "tiny")), synthetic(work / "data"), 1
    else:
        from xft_core.hooks.manager import get_plugin_manager
        from xft_core.models import resolve_model

        model, data = str(resolve_model(args.model, get_plugin_manager())), SIB
    runs: dict[int, dict] = {}
    for seed in args.seeds:
        if len(args.seeds) > 1:
            print(f"seed {seed}", flush=True)
        runs[seed] = results = {}
        for variant in args.variants:
            results[variant] = r = run_variant(variant, model, data, args, seed)
            print(f"{variant:10s} {r['examples_per_second']:7.2f} ex/s  {r['examples_per_cpu_second']:7.2f} ex/CPU-s  "
                  f"padding {100 * r['padding_share']:4.1f}%  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"dev macro-F1 {100 * r['dev_macro_f1']:5.1f}  precision {r.get('precision', 'no')}", flush=True)
        if "plain" in results:
            cpu = {v: ratio for v, ratio, _ in against_plain([results], "examples_per_cpu_second")}
            for variant, ratio, points in against_plain([results]):
                print(f"{variant}/plain: {ratio:.2f}x examples/s ({cpu[variant]:.2f}x per CPU-second), "
                      f"dev macro-F1 {points:+.1f} points")
    mean = {}
    if len(runs) > 1 and "plain" in args.variants:
        print(f"mean of {len(runs)} seeds (rates averaged over seeds, then divided; F1 differences averaged):")
        cpu = {v: ratio for v, ratio, _ in against_plain(list(runs.values()), "examples_per_cpu_second")}
        for variant, ratio, points in against_plain(list(runs.values())):
            mean[variant] = {"ratio": ratio, "cpu_ratio": cpu[variant], "dev_macro_f1_points": points}
            print(f"  {variant}/plain: {ratio:.2f}x examples/s ({cpu[variant]:.2f}x per CPU-second), "
                  f"dev macro-F1 {points:+.1f} points")
    if args.json:
        from common import describe

        Path(args.json).write_text(json.dumps({"model": args.model if not args.quick else "tiny", "epochs": args.epochs,
                                               "hardware": describe(), "threads": args.threads,
                                               "batch_size": args.batch_size, "seeds": args.seeds,
                                               "runs": {str(k): v for k, v in runs.items()}, "mean": mean},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
