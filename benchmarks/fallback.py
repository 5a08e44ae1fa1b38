"""Serving a language without its own adapter: the English adapter, the best other source, a merge, an ensemble.

    python benchmarks/fallback.py                     # SIB-200, 10 languages, 3 seeds, Gemma 3 270M (hours on 2 cores)
    python benchmarks/fallback.py --quick             # a tiny model, 4 languages, 1 seed: what CI runs (~1 min)

One LoRA adapter is trained per language with the transfer suite's default recipe (`verbalizer`: prompt-based
classification, template `topic`, LoRA r16/alpha32/dropout 0.05, 40 steps of batch 16, lr 5e-4, precision auto).
Then each language L in turn is treated as a language without an adapter and without labelled data: its own
adapter is unregistered from one `Router`, and L's test split is served

- by the English adapter alone (the baseline: what a single `fallback="eng"` gives);
- by the best other source, ranked on L's dev split without L's own adapter (`source_ranking`, written as a
  fallback map, `Router(fallback={L: best})`);
- by a merge of the adapters of L's K nearest languages (`{"merge": {...}}`, weights from the language-distance
  table), made by the strategy's `combine`;
- by an ensemble of the same adapters (`{"ensemble": {...}}`: their probabilities averaged).

L's own adapter is scored too (the in-language ceiling). English is not a target (its baseline is itself).
Scores are macro-F1 x100 on L's test split, averaged over the target languages, mean and std over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

SUITE_LANGUAGES = ["eng", "deu", "fra", "spa", "rus", "zho", "arb", "hin", "swh", "yor"]
QUICK_LANGUAGES = ["eng", "deu", "fra", "swh"]
SOURCE = "eng"


def prepare_data(data: Path, out: Path, languages: list[str], *, eval_rows: int, dev_rows: int, train_rows: int) -> Path:
    """The shipped folder, or a copy under `out` with the test (and dev, train) splits cut to rows drawn across
    each file with a fixed seed, the same lines in every language (the sets are parallel)."""
    from xft_core.bench.tasks import _read, _write, spread_sample

    if not eval_rows and not dev_rows and not train_rows:
        return data
    target = out / "data"
    target.mkdir(parents=True, exist_ok=True)
    for language in languages:
        for split, limit in (("train", train_rows), ("dev", dev_rows), ("test", eval_rows)):
            rows = _read(data / f"{language}.{split}.jsonl")
            _write(target / f"{language}.{split}.jsonl", spread_sample(rows, limit, key=f"fallback:{split}"))
    return target


def train_adapters(model: str, data: Path, out: Path, languages: list[str], seed: int, *, steps: int, batch_size: int,
                   progress: bool) -> dict[str, Path]:
    """One run per language (the suite's verbalizer recipe with that language as the source); kept and reused."""
    from xft_core.bench.recipes import RECIPES, run_config
    from xft_core.bench.tasks import TASKS
    from xft_core.training import train

    packages = {}
    for language in languages:
        folder = out / "runs" / f"s{seed}"
        run_dir = folder / language
        if not (run_dir / "run.json").is_file():
            task = dataclasses.replace(TASKS["sib200"], source=language, targets=())
            config = run_config(RECIPES["verbalizer"], task, name=language, out=str(folder), model=model, data=str(data),
                                seed=seed, steps=steps, batch_size=batch_size)
            started = time.perf_counter()
            train(config, progress=progress)
            print(f"trained {language} seed {seed} in {time.perf_counter() - started:.0f} s", flush=True)
        (package,) = [p for p in (run_dir / "adapters").iterdir() if (p / "xft.json").is_file()]
        packages[language] = package
    return packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny model, 4 languages, 1 seed, few rows (CI)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--languages", nargs="+", default=SUITE_LANGUAGES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-rows", type=int, default=0, help="test rows per language, drawn across the file (0: all)")
    parser.add_argument("--dev-rows", type=int, default=0, help="dev rows per language for the ranking (0: all)")
    parser.add_argument("--work", type=Path, default=Path("fallback-bench"), help="runs and data are kept here and reused")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--train-only", action="store_true", help="train the adapters and stop")
    args = parser.parse_args(argv)

    import torch

    from xft_core.models import quiet_transformers

    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data, args.work, args.languages, eval_rows=args.eval_rows, dev_rows=args.dev_rows,
                        train_rows=0)
    for seed in args.seeds:
        train_adapters(args.model, data, args.work, args.languages, seed, steps=args.steps, batch_size=args.batch_size,
                       progress=False)
    if args.train_only:
        print(f"trained in {time.perf_counter() - started:.0f} s")
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
