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
    from xft_core.bench.recipes import installed_recipes, recipe_task, run_config
    from xft_core.bench.tasks import TASKS
    from xft_core.training import train

    verbalizer = installed_recipes()["verbalizer"]
    packages = {}
    for language in languages:
        folder = out / "runs" / f"s{seed}"
        run_dir = folder / language
        if not (run_dir / "run.json").is_file():
            task = dataclasses.replace(TASKS["sib200"], source=language, targets=())
            info = recipe_task(task, steps=steps, batch_size=batch_size, unlabelled=False)
            config = run_config(verbalizer, task, info, name=language, out=str(folder), model=model, data=str(data),
                                seed=seed, steps=steps, batch_size=batch_size)
            started = time.perf_counter()
            train(config, progress=progress)
            print(f"trained {language} seed {seed} in {time.perf_counter() - started:.0f} s", flush=True)
        (package,) = [p for p in (run_dir / "adapters").iterdir() if (p / "xft.json").is_file()]
        packages[language] = package
    return packages


def read_rows(data: Path, language: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (data / f"{language}.{split}.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def rank_on_dev(packages: dict[str, Path], data: Path, languages: list[str]) -> dict:
    """`xft eval`'s ranking: every adapter on every language's dev split (the transfer matrix), as sources.json."""
    from xft_core.evaluation import transfer_matrix
    from xft_core.evaluation.ranking import source_ranking

    matrix = transfer_matrix(list(packages.values()), data, split="dev", languages=languages, include_base=False,
                             progress=False, precision="auto", batch_size=32)
    return source_ranking(matrix)


def evaluate_seed(packages: dict[str, Path], data: Path, languages: list[str], ranking: dict, *, k: int, table: str,
                  eval_rows: int) -> dict[str, dict[str, float]]:
    """Per target language (not the source): macro-F1 of each way to serve it without its own adapter, and of its own."""
    from xft_core.evaluation import score
    from xft_core.inference.router import Router
    from xft_core.util.language_distance import nearest

    router = Router(packages[SOURCE], capacity=len(packages) + 2, batch_size=32, max_length=128, precision="auto")
    for language, package in packages.items():
        router.register(language, package)
    results: dict[str, dict[str, float]] = {}
    for target in [lang for lang in languages if lang != SOURCE]:
        rows = read_rows(data, target, "test")
        router.unregister(target)  # the language has no adapter now
        others = [e for e in ranking["targets"][target]["ranking"] if e["adapter"] != target and e["adapter"] in packages]
        best = others[0]["adapter"]
        near = nearest(target, {lang: [lang] for lang in packages if lang != target}, k=k, table=table)
        ways = {"english": "eng", "best_source": best, "merge": {"merge": near}, "ensemble": {"ensemble": near}}
        scores = {}
        for way, route in ways.items():
            router.set_fallback({target: route})
            predictions = router.predict(rows, target)
            scores[way] = score(router.base.head, router.pm, predictions, rows)["macro_f1"]
        router.set_fallback(None)
        router.register(target, packages[target])
        scores["own"] = score(router.base.head, router.pm, router.predict(rows, target), rows)["macro_f1"]
        results[target] = {**scores, "best": best, "nearest": near}
        print(f"  {target}: " + ", ".join(f"{w} {scores[w] * 100:.1f}" for w in WAYS) + f" (best source {best}; "
              + "merge/ensemble of " + ", ".join(f"{n} {w:.2f}" for n, w in near.items()) + ")", flush=True)
    return results


WAYS = ("english", "best_source", "merge", "ensemble", "own")
LABELS = {"english": "English adapter alone", "best_source": "best other source (ranked on dev)",
          "merge": "merge of the nearest languages' adapters", "ensemble": "ensemble of the nearest languages' adapters",
          "own": "the language's own adapter (ceiling)"}


def report(per_seed: dict[int, dict[str, dict]], languages: list[str]) -> str:
    targets = [lang for lang in languages if lang != SOURCE]
    lines = ["| way to serve a language without its adapter | macro-F1 (mean over languages) | vs English adapter | seeds |",
             "|---|---:|---:|---:|"]
    means = {}
    for way in WAYS:
        values = [statistics.mean(seed[t][way] for t in targets) * 100 for seed in per_seed.values()]
        english = [statistics.mean(seed[t]["english"] for t in targets) * 100 for seed in per_seed.values()]
        means[way] = statistics.mean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        gain = statistics.mean(v - e for v, e in zip(values, english))
        lines.append(f"| {LABELS[way]} | {means[way]:.1f} ± {spread:.1f} | {gain:+.1f} | {len(values)} |")
    lines += ["", "| language | " + " | ".join(WAYS) + " | best sources (per seed) |", "|---|" + "---:|" * len(WAYS) + "---|"]
    for t in targets:
        cells = [f"{statistics.mean(seed[t][w] for seed in per_seed.values()) * 100:.1f}" for w in WAYS]
        lines.append(f"| {t} | " + " | ".join(cells) + " | " + " ".join(seed[t]["best"] for seed in per_seed.values()) + " |")
    fallback = max(("best_source", "merge", "ensemble"), key=means.__getitem__)
    lines += ["", f"best fallback: {fallback} {means[fallback]:.1f} vs English adapter alone {means['english']:.1f} "
                  f"({means[fallback] - means['english']:+.1f})"]
    return "\n".join(lines)


def quick_model(folder: Path) -> str:
    """A tiny Gemma-3-like model whose tokenizer knows SIB-200's label words (as `xft bench transfer --quick`)."""
    from xft_core.testing import DEFAULT_TEXTS, build_tiny_model

    if not (folder / "config.json").is_file():
        words = ["science", "travel", "politics", "sports", "health", "entertainment", "geography"]
        build_tiny_model("gemma3", folder, texts=list(DEFAULT_TEXTS) + [f"{w} {w} {w}" for w in words] * 20)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny model, 4 languages, 1 seed, 4 steps, 8 rows, the CLDR table (CI)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sib200")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--languages", nargs="+", default=SUITE_LANGUAGES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-rows", type=int, default=0, help="test rows per language, drawn across the file (0: all)")
    parser.add_argument("--dev-rows", type=int, default=0, help="dev rows per language for the ranking (0: all)")
    parser.add_argument("--k", type=int, default=3, help="nearest languages merged or ensembled (default 3)")
    parser.add_argument("--table", default="uriel", choices=["uriel", "cldr"], help="language-distance table")
    parser.add_argument("--work", type=Path, default=Path("fallback-bench"), help="runs and data are kept here and reused")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--train-only", action="store_true", help="train the adapters and stop")
    args = parser.parse_args(argv)
    from common import auto_precision, print_hardware

    print_hardware(f"{auto_precision()} (training and the router run with precision auto)")
    train_rows = 0
    if args.quick:
        args.model = quick_model(args.work / "tiny-gemma3")
        args.languages, args.seeds, args.steps, args.batch_size = QUICK_LANGUAGES, args.seeds[:1], 4, 4
        args.eval_rows, args.dev_rows, train_rows, args.table = 8, 8, 32, "cldr"

    import torch

    from xft_core.models import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data, args.work, args.languages, eval_rows=args.eval_rows, dev_rows=args.dev_rows,
                        train_rows=train_rows)
    per_seed = {}
    for seed in args.seeds:
        packages = train_adapters(args.model, data, args.work, args.languages, seed, steps=args.steps,
                                  batch_size=args.batch_size, progress=False)
        if args.train_only:
            continue
        print(f"seed {seed}:", flush=True)
        ranking = rank_on_dev(packages, data, args.languages)
        per_seed[seed] = evaluate_seed(packages, data, args.languages, ranking, k=args.k, table=args.table,
                                       eval_rows=args.eval_rows)
        (args.work / f"results-s{seed}.json").write_text(json.dumps(per_seed[seed], indent=1))
    if per_seed:
        print()
        print(report(per_seed, args.languages))
    rows = "all" if not args.eval_rows else args.eval_rows
    print(f"\nmodel {args.model if not args.quick else 'tiny gemma3'}; languages {' '.join(args.languages)}; seeds "
          f"{' '.join(map(str, args.seeds))}; {args.steps} steps of batch {args.batch_size}; test rows per language {rows}; "
          f"dev rows {args.dev_rows or 'all'}; k {args.k}; table {args.table}; wall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
