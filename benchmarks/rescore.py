"""Every test row instead of the suite's sample: a transfer suite's finished runs scored again, raw and under each
calibration method, with paired bootstrap intervals over the test items.

    python benchmarks/rescore.py --suite runs/bench-transfer --task xnli --recipe verbalizer --seeds 0 1 2
    python benchmarks/rescore.py --suite A B C --task xnli --recipe verbalizer-st --seeds 0 1 2   # seeds in 3 folders
    python benchmarks/rescore.py --quick     # a tiny model on SIB-200, one seed: what CI runs (~1 min)

Why: `xft bench transfer --max-examples N` draws the same N lines in every target language (SIB-200 and XNLI are
parallel) and the same lines for every seed. A zero-shot average over 14 languages then rests on N items, and the
seeds' standard deviation does not see that sampling at all: two recipes that differ by 3 points on 50 lines can
be level on all 498. This script trains nothing. For each run folder (`<suite>/runs/<task>-<recipe>-s<seed>`, an
uncalibrated run) it predicts every test row of every language (`--max-examples 0`), each target's unlabelled
rows, its content-free inputs and its domain-context rows, once; each method's prior is then estimated with xft's
own `log_prior` from the rows that method uses (`batch`, `batch-log`: the unlabelled rows; `contextual`: the
content-free inputs; `domain`: 20 rows of random tokens of the unlabelled text), applied with xft's `correct` (what
`xft calibrate` + `xft eval` do), and scored with the head's metric. The intervals resample the test items with
replacement, the same items in every language and seed (the rows are parallel), 1000 times: the 2.5th and 97.5th
percentiles of each method's gain over the raw adapter.

Predictions are kept in `--work` (one file per run folder) and reused by a later call on the same run and rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from common import print_hardware  # noqa: E402

METHODS = ("raw", "batch", "batch-log", "contextual", "domain")
PRIOR_PARTS = {"batch": "unlabelled", "batch-log": "unlabelled", "contextual": "contextual", "domain": "domain"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, nargs="+", help="suite --out folder(s) holding runs/<task>-<recipe>-s<seed>")
    parser.add_argument("--task", default="xnli", help="suite task (a classification task: sib200, xnli)")
    parser.add_argument("--recipe", default="verbalizer", help="the recipe whose uncalibrated runs are scored again")
    parser.add_argument("--against", default="", metavar="RECIPE",
                        help="also compare with this recipe's raw runs of the same seeds (say, verbalizer-st against "
                             "verbalizer): each method's difference to it, with its interval over the items")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder with sib200/, nli/")
    parser.add_argument("--max-examples", type=int, default=0, help="test rows per language (0: all)")
    parser.add_argument("--sample", type=int, default=50,
                        help="also score the N lines `xft bench transfer --max-examples N` evaluates (0: no)")
    parser.add_argument("--unlabelled-rows", type=int, default=500, help="as the suite's --unlabelled-rows")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test items")
    parser.add_argument("--work", type=Path, default=Path("runs/rescore"),
                        help="data, predictions and rescore-<task>-<recipe>.json")
    parser.add_argument("--quick", action="store_true", help="run a quick suite first (tiny model, SIB-200, one seed)")
    args = parser.parse_args()
    import torch

    from xft_core.bench.tasks import TASKS

    torch.set_num_threads(1)
    if args.quick:
        args.task, args.recipe, args.seeds, args.sample, args.bootstrap = "sib200", "verbalizer", [0], 8, 200
        args.max_examples = args.max_examples or 16
        args.suite = [quick_run(args.work / "suite", args.data)]
    if not args.suite:
        parser.error("--suite is needed (or --quick)")
    task = TASKS.get(args.task)
    if task is None or task.kind != "classification":
        parser.error(f"--task {args.task}: one of {', '.join(n for n, t in TASKS.items() if t.kind == 'classification')}")
    runs = {seed: find_run(args.suite, task.name, args.recipe, seed) for seed in args.seeds}
    data = prepared_data(task, args)
    precision = None
    dumps, against = {}, {}
    for seed, run in runs.items():
        dumps[seed], precision = predictions(run, task, data, args.work / "predictions")
        if args.against:
            against[seed], _ = predictions(find_run(args.suite, task.name, args.against, seed), task, data,
                                           args.work / "predictions")
    print_hardware(precision)
    report = summarise(task, args, dumps, data, against)
    path = args.work / f"rescore-{task.name}-{args.recipe}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_report(report)
    return 0


def quick_run(out: Path, data_root: Path) -> Path:
    """A quick suite's verbalizer run on SIB-200 (tiny model, 4 steps), trained in `out` unless it is there."""
    from xft_core.bench.quick import quick_suite
    from xft_core.bench.transfer import Suite, run_suite

    suite = quick_suite(Suite(tasks=["sib200"], recipes=["verbalizer"], seeds=[0], out=out, data_root=data_root,
                              progress=False))
    run_suite(suite)
    return out


def find_run(suites: list[Path], task: str, recipe: str, seed: int) -> Path:
    """The run folder of (task, recipe, seed) in the first suite folder that has it finished."""
    name = f"{task}-{recipe}-s{seed}"
    for suite in suites:
        if (suite / "runs" / name / "run.json").is_file():
            return suite / "runs" / name
    raise SystemExit(f"no finished run {name} (runs/{name}/run.json) in {', '.join(map(str, suites))}")


def prepared_data(task: Any, args: argparse.Namespace) -> Path:
    """The task's files as the suite writes them, every test row kept (or --max-examples of them)."""
    from xft_core.bench.tasks import task_data

    return task_data(task, args.data, args.work, eval_rows=args.max_examples, unlabelled_rows=args.unlabelled_rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def predictions(run: Path, task: Any, data: Path, cache: Path) -> tuple[dict[str, Any], str]:
    """{"labels", "parts": {language: {part: [scores per row]}}, "gold": {language: [label per test row]}} of the
    run's packages (each language answered as the router would: `teacher_predictions`), and the precision they
    predicted in; from the cache when it holds this run on these rows."""
    from xft_core.adapters import load_base
    from xft_core.evaluation.calibration import Calibration, prior_inputs, run_settings
    from xft_core.evaluation.plan import calibration_packages
    from xft_core.evaluation.teacher import teacher_predictions
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.util.files import atomic_write_json
    from xft_core.util.precision import resolve_precision

    packages = calibration_packages(run)
    calibrated = [p.name for p in packages if Calibration.read(p) is not None]
    if calibrated:
        raise SystemExit(f"{run}: package(s) {', '.join(calibrated)} hold a calibration; rescore.py scores a recipe's "
                         "uncalibrated runs (a calibrated recipe's parent) and calibrates them itself")
    precision = resolve_precision(run_settings(packages[0])[1], "cpu")
    rows = {lang: read_jsonl(data / f"{lang}.{task.eval_split}.jsonl") for lang in task.languages}
    unlabelled = {lang: read_jsonl(data / f"{lang}.{task.unlabelled_split}.jsonl") for lang in task.targets}
    key = {"run": str(run.resolve()), "package": packages[0].name, "precision": precision,
           "rows": {lang: len(r) for lang, r in rows.items()}, "unlabelled": {lang: len(r) for lang, r in unlabelled.items()}}
    path = cache / f"{run.name}.json"
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached, precision
    pm = get_plugin_manager()
    base = load_base(packages[0], pm)  # the head and tokenizer the content-free and domain rows are built with
    inputs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for lang in task.languages:
        inputs[lang] = {"test": rows[lang]}
        if lang in unlabelled:
            inputs[lang].update(
                unlabelled=unlabelled[lang],
                contextual=prior_inputs("contextual", base.head, base.tokenizer, unlabelled[lang], lang),
                domain=prior_inputs("domain", base.head, base.tokenizer, unlabelled[lang], lang))
    labels = list(base.head.labels)
    del base
    print(f"predicting {run.name}: {sum(len(r) for parts in inputs.values() for r in parts.values())} rows", flush=True)
    answered = teacher_predictions(run, {lang: [row for part in parts.values() for row in part]
                                         for lang, parts in inputs.items()}, pm=pm, progress=True)
    scores: dict[str, dict[str, list[list[float]]]] = {}
    for lang, parts in inputs.items():
        flat = iter(answered[lang])
        # the part's rows first: zip stops on them before it takes a prediction of the next part
        scores[lang] = {part: [[float(p["scores"][label]) for label in labels] for _, p in zip(part_rows, flat)]
                        for part, part_rows in parts.items()}
    dump = {"key": key, "labels": labels, "parts": scores,
            "gold": {lang: [row["label"] for row in r] for lang, r in rows.items()}}
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, dump)
    return dump, precision


def predicted_labels(dump: dict[str, Any], lang: str, method: str) -> list[int]:
    """Label index per test row of `lang`: the raw argmax, or after `method`'s prior (xft's log_prior, correct)."""
    from xft_core.evaluation.calibration import correct, log_prior

    labels = dump["labels"]
    as_predictions = lambda rows: [{"scores": dict(zip(labels, row))} for row in rows]  # noqa: E731
    test = as_predictions(dump["parts"][lang]["test"])
    if method == "raw":
        return [max(range(len(labels)), key=lambda i: p["scores"][labels[i]]) for p in test]
    prior = log_prior(as_predictions(dump["parts"][lang][PRIOR_PARTS[method]]), labels, method)
    return [labels.index(correct(p, labels, prior)["label"]) for p in test]


def macro_f1(pred: Any, gold: Any, classes: int) -> Any:
    """xft's macro-F1 (the mean F1 over the classes present in references or predictions), vectorised over the
    leading axes of `pred` and `gold` (..., items)."""
    import numpy as np

    total, present = 0.0, 0
    for c in range(classes):
        tp = ((pred == c) & (gold == c)).sum(-1)
        fp = ((pred == c) & (gold != c)).sum(-1)
        fn = ((pred != c) & (gold == c)).sum(-1)
        seen = (tp + fp + fn) > 0
        total = total + np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        present = present + seen
    return total / np.maximum(present, 1)


def summarise(task: Any, args: argparse.Namespace, dumps: dict[int, dict[str, Any]], data: Path,
              against: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per method: the zero-shot mean (per seed, per language), its gain over the raw adapter and over the raw runs
    of `against` (when given), each with its bootstrap interval over the items, and its score on the suite's sample."""
    import numpy as np

    seeds = sorted(dumps)
    labels = dumps[seeds[0]]["labels"]
    targets = list(task.targets)
    gold = {lang: np.array([labels.index(g) for g in dumps[seeds[0]]["gold"][lang]]) for lang in task.languages}
    n = len(gold[targets[0]])
    if any(len(gold[lang]) != n for lang in targets):
        raise SystemExit(f"{task.name}: the targets' test splits differ in length; the items cannot be resampled together")
    sample = suite_sample(task, data, args) if args.sample else None
    methods = [m for m in METHODS if m == "raw" or all(
        PRIOR_PARTS[m] in dumps[s]["parts"][lang] for s in seeds for lang in targets)]
    # predictions: method -> seed x language x item
    pred = {m: np.array([[predicted_labels(dumps[s], lang, m) for lang in targets] for s in seeds]) for m in methods}
    source = [float(macro_f1(np.array(predicted_labels(dumps[s], task.source, "raw")), gold[task.source], len(labels)))
              for s in seeds]
    gold_t = np.array([gold[lang] for lang in targets])[None]  # 1 x language x item
    rng = np.random.default_rng(0)
    draws = rng.integers(0, n, size=(args.bootstrap, n))
    out: dict[str, Any] = {"task": task.name, "recipe": args.recipe, "seeds": seeds, "test_rows": n,
                           "sample_rows": int(sample.sum()) if sample is not None else 0,
                           "source": {"mean": statistics.mean(source), "per_seed": source}, "methods": {}}
    boot_raw = boot_ref = None
    if against:
        if any(against[s]["gold"] != dumps[s]["gold"] or against[s]["labels"] != labels for s in seeds):
            raise SystemExit(f"--against {args.against}: its runs were scored on other rows or labels")
        reference = np.array([[predicted_labels(against[s], lang, "raw") for lang in targets] for s in seeds])
        out["against"] = {"recipe": args.against, "zero_shot": float(macro_f1(reference, gold_t, len(labels)).mean())}
        boot_ref = np.array([macro_f1(reference[..., d], gold_t[..., d], len(labels)).mean() for d in draws])
    for m in methods:
        scores = macro_f1(pred[m], gold_t, len(labels))  # seed x language
        entry = {"zero_shot": float(scores.mean()), "per_seed": [float(x) for x in scores.mean(1)],
                 "per_language": {lang: float(x) for lang, x in zip(targets, scores.mean(0))}}
        boot = np.array([macro_f1(pred[m][..., d], gold_t[..., d], len(labels)).mean() for d in draws])
        if m == "raw":
            boot_raw = boot
        else:
            diff = boot - boot_raw
            entry["gain"] = entry["zero_shot"] - out["methods"]["raw"]["zero_shot"]
            entry["interval"] = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
        if boot_ref is not None:
            entry["vs_against"] = entry["zero_shot"] - out["against"]["zero_shot"]
            entry["against_interval"] = [float(np.percentile(boot - boot_ref, q)) for q in (2.5, 97.5)]
        if sample is not None:
            entry["sample_zero_shot"] = float(macro_f1(pred[m][..., sample], gold_t[..., sample], len(labels)).mean())
        out["methods"][m] = entry
    return out


def suite_sample(task: Any, data: Path, args: argparse.Namespace) -> Any:
    """Which of the rescored test items the suite's `--max-examples N` evaluates: N lines drawn from all of the
    split's lines as the suite draws them (the same lines in every target language)."""
    import numpy as np

    from xft_core.bench.tasks import spread_sample, task_data

    every = task_data(task, args.data, args.work / "all-rows") if args.max_examples else data
    lines = read_jsonl(every / f"{task.targets[0]}.{task.eval_split}.jsonl")
    kept = {json.dumps(r, sort_keys=True) for r in spread_sample(lines, args.sample, key=f"{task.name}:{task.eval_split}")}
    rows = read_jsonl(data / f"{task.targets[0]}.{task.eval_split}.jsonl")
    return np.array([json.dumps(r, sort_keys=True) in kept for r in rows])


def print_report(report: dict[str, Any]) -> None:
    seeds = ",".join(map(str, report["seeds"]))
    source = report["source"]["mean"] * 100
    print(f"\n{report['task']} / {report['recipe']} / seeds {seeds}: {report['test_rows']} test rows per language "
          f"(the same items in every language); source language (raw) {source:.1f}")
    sample = report["sample_rows"]
    other = report.get("against", {}).get("recipe")
    if other:
        print(f"against: {other} (raw) {report['against']['zero_shot'] * 100:.1f} on the same rows and seeds")
    head = f"| method | zero-shot, {report['test_rows']} rows | vs raw | 95% interval (items) |" + (
        f" zero-shot, suite's {sample} | vs raw |" if sample else "") + (
        f" vs {other} | 95% interval (items) |" if other else "")
    print(head)
    print("|---|---:|---:|---|" + ("---:|---:|" if sample else "") + ("---:|---|" if other else ""))
    raw = report["methods"]["raw"]
    for name, entry in report["methods"].items():
        gain = entry.get("gain", 0.0) * 100
        interval = entry.get("interval")
        span = f"{interval[0] * 100:+.1f} .. {interval[1] * 100:+.1f}" if interval else "-"
        line = f"| {name} | {entry['zero_shot'] * 100:.1f} | {gain:+.1f} | {span} |"
        if sample:
            shift = entry["sample_zero_shot"] - raw["sample_zero_shot"]
            line += f" {entry['sample_zero_shot'] * 100:.1f} | {shift * 100:+.1f} |"
        if other:
            low, high = entry["against_interval"]
            line += f" {entry['vs_against'] * 100:+.1f} | {low * 100:+.1f} .. {high * 100:+.1f} |"
        print(line)
    languages = list(raw["per_language"])
    print("\n| method | " + " | ".join(languages) + " |")
    print("|---|" + "---:|" * len(languages))
    for name, entry in report["methods"].items():
        print(f"| {name} | " + " | ".join(f"{entry['per_language'][lang] * 100:.1f}" for lang in languages) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
