"""Does `torch.compile` pay for xft's forwards on a CPU? The measurement behind "not on by default"
(docs/benchmarks.md, "torch.compile").

The same prompts (SIB-200 test sentences in four languages, "<text>\\nTopic:", as the prompt-classification head
builds them), ordered by length and cut into forwards of `--batch-size` as the router does, so the forwards have
different shapes, through one base model in one run:

  eager      the model as loaded (the baseline)
  compiled   `torch.compile(model, dynamic=True)` (inductor): one graph for every batch shape; its first pass
             over the batches (compilation included) is timed apart from the steady state

It prints rows/s of each in the steady state (median of `--repeat` passes over all batches, the two alternating),
the ratio, the compilation time and the largest logit difference at the seven SIB-200 topic words.

    python benchmarks/compile_probe.py             # the embedded Gemma 3 270M, 16 prompts per language
    python benchmarks/compile_probe.py --quick     # a tiny random Gemma 3 (CI); its numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"
LANGUAGES = ("eng", "deu", "zho", "hin")
TOPICS = ("science", "travel", "politics", "sports", "health", "entertainment", "geography")


def prompts(per_language: int) -> list[str]:
    texts = []
    for language in LANGUAGES:
        lines = (SIB / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] + "\nTopic:" for line in lines[:per_language]]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="base model (default: the embedded Gemma 3 270M)")
    parser.add_argument("--quick", action="store_true", help="a tiny random Gemma 3, 4 prompts per language (CI)")
    parser.add_argument("--per-language", type=int, default=16, help="prompts per language (default 16)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per forward (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over all batches per variant (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if not SIB.is_dir():
        print(f"needs the SIB-200 data in {SIB}")
        return 2

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import quiet_transformers, resolve_model
    from xft_core.testing import tiny_model_cache

    quiet_transformers()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="xft-compile-") as scratch:
        folder = tiny_model_cache("gemma3", scratch) if args.quick else resolve_model(args.model, get_plugin_manager())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval().requires_grad_(False)
    tokenizer.padding_side = "left"
    texts = sorted(prompts(2 if args.quick else args.per_language), key=lambda t: len(tokenizer(t)["input_ids"]))
    word_ids = [tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in TOPICS]
    batches = [tokenizer(texts[i:i + args.batch_size], return_tensors="pt", padding=True)
               for i in range(0, len(texts), args.batch_size)]
    shapes = sorted({tuple(b["input_ids"].shape) for b in batches})

    def scores(variant: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        with torch.no_grad():
            out = torch.cat([variant(**b, logits_to_keep=1).logits[:, -1, word_ids] for b in batches])
        return out, time.perf_counter() - started

    print(f"model {Path(folder).name}: {len(texts)} prompts in {len(LANGUAGES)} languages, {len(batches)} forwards "
          f"of shapes {', '.join(f'{r}x{c}' for r, c in shapes)}; {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    reference, _ = scores(model)
    compiled = torch.compile(model, dynamic=True)
    got, first = scores(compiled)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.repeat):
        times["eager"].append(scores(model)[1])
        times["compiled"].append(scores(compiled)[1])
    eager, fast = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"{'eager':<9} {len(texts) / eager:8.2f} rows/s  1.00x")
    print(f"{'compiled':<9} {len(texts) / fast:8.2f} rows/s  {eager / fast:.2f}x  first pass (compiling) "
          f"{first:.1f} s  max score difference {(got - reference).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
