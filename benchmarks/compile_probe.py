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

import statistics
import sys
import time
from typing import Any

from common import LANGUAGES, SIB, TOPICS, load_lm, print_hardware, probe_parser, prompts


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, per_language=16, batch_size=16)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over all batches per variant (default 3)")
    args = parser.parse_args(argv)
    if not SIB.is_dir():
        print(f"needs the SIB-200 data in {SIB}")
        return 2

    import torch

    folder, tokenizer, model = load_lm(args)
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

    print(f"model {folder.name}: {len(texts)} prompts in {len(LANGUAGES)} languages, {len(batches)} forwards "
          f"of shapes {', '.join(f'{r}x{c}' for r, c in shapes)}; {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, precision fp32")
    print_hardware("float32")
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
