"""`xft bench transfer`: recipes x seeds x tasks, trained on English under one step budget, evaluated zero-shot.

Every (task, recipe, seed) is one `xft train` run and one transfer matrix on the task's evaluation split; its
result is appended to `results.jsonl` at once, so a long suite continues where it stopped (`--resume` is the
default: finished runs are not repeated). The report holds, per task and recipe, the English score, the mean
over the zero-shot languages (mean and std over seeds), the difference to the baseline, examples/s and wall time,
as Markdown and JSON.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xft_core.bench.recipes import BASELINE, RECIPES, Recipe, run_config
from xft_core.bench.tasks import TASKS, SuiteTask, task_data
from xft_core.util.files import atomic_write_json, atomic_write_text


@dataclass
class Suite:
    """What to run: tasks, recipes and seeds under one budget, on one model."""

    tasks: list[str]
    recipes: list[str]
    seeds: list[int]
    out: Path
    data_root: Path
    model: str = "gemma3-270m"
    steps: int = 0  # training steps of every recipe (0: each task's own budget, `SuiteTask.steps`)
    batch_size: int = 16
    eval_rows: int = 0  # per target language (0: the whole evaluation split)
    # the source language's evaluation rows (0: all): its score is one language, not an average over many, so a
    # cut to 50 rows would leave it +-7 points of sampling noise
    source_eval_rows: int = 0
    train_rows: int = 0  # per language (0: all)
    language_adapter_steps: int = 100  # MAD-X: steps of each language adapter (trained once per task)
    pm: Any = None
    progress: bool = True
    results: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS] + [r for r in self.recipes if r not in RECIPES]
        if unknown:
            raise ValueError(f"unknown task or recipe: {', '.join(unknown)}. Tasks: {', '.join(TASKS)}; "
                             f"recipes: {', '.join(RECIPES)}")
        for name in self.recipes:
            parent = RECIPES[name].derived_from
            if parent and parent not in self.recipes:
                raise ValueError(f"recipe '{name}' evaluates the adapters of '{parent}': add it to the recipes")

    def steps_for(self, task: SuiteTask) -> int:
        return self.steps or task.steps


# ------------------------------------------------------------------------------------------------- running
def run_suite(suite: Suite, *, console: Any = None) -> dict[str, Any]:
    """Run every missing (task, recipe, seed), then write `transfer.json` and `transfer.md`; returns the report."""
    from xft_core.util.console import console as make_console

    suite.check()
    console = console or make_console(stderr=True)
    suite.out.mkdir(parents=True, exist_ok=True)
    log = suite.out / "results.jsonl"
    done = {(r["task"], r["recipe"], r["seed"]): r for r in _read_results(log)}
    for task_name in suite.tasks:
        task = TASKS[task_name]
        _check_budget(suite, task, [r for r in done.values() if r["task"] == task.name], log)
        data = task_data(task, suite.data_root, suite.out, eval_rows=suite.eval_rows, train_rows=suite.train_rows,
                         source_eval_rows=suite.source_eval_rows)
        recipes = [RECIPES[r] for r in suite.recipes if task.kind in RECIPES[r].kinds]
        _rescore_source(suite, task, data, done, log, console)
        language_adapters = ""
        if any(r.language_adapters for r in recipes):
            language_adapters = _language_adapters(suite, task, data, console)
        for seed in suite.seeds:
            for recipe in sorted(recipes, key=lambda r: bool(r.derived_from)):  # trained ones first
                key = (task.name, recipe.name, seed)
                if key in done:
                    continue
                console.rule(f"[bold]{task.name} / {recipe.name} / seed {seed}")
                result = _run_one(suite, task, recipe, seed, str(data), language_adapters)
                done[key] = result
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(result, ensure_ascii=False) + "\n")
                console.print(f"{task.name} {recipe.name} seed {seed}: source {result['source_score']:.3f}, "
                              f"zero-shot {result['zero_shot']:.3f} ({result['wall_seconds']:.0f} s)", highlight=False)
    suite.results = [done[k] for k in sorted(done) if k[0] in suite.tasks and k[1] in suite.recipes and k[2] in suite.seeds]
    report = summarise(suite)
    atomic_write_json(suite.out / "transfer.json", report)
    atomic_write_text(suite.out / "transfer.md", markdown(report))
    return report


def _check_budget(suite: Suite, task: SuiteTask, finished: list[dict[str, Any]], log: Path) -> None:
    """Finished runs count only under the budget they ran with: a suite asking for other steps or another batch
    size in the same folder is refused, since it would mix budgets in one table (its run folders carry no budget)."""
    asked = (suite.steps_for(task), suite.batch_size)
    other = sorted({(r.get("steps"), r.get("batch_size")) for r in finished} - {asked}, key=str)
    if other:
        held = ", ".join(f"{steps} steps of batch {batch}" for steps, batch in other)
        raise ValueError(f"{log} holds {task.name} runs of {held}; this suite asks for {asked[0]} steps of batch "
                         f"{asked[1]}. Give another --out, or the same --steps and --batch-size")


def _run_one(suite: Suite, task: SuiteTask, recipe: Recipe, seed: int, data: str, language_adapters: str) -> dict[str, Any]:
    from xft_core.evaluation import transfer_matrix
    from xft_core.training import train

    started = time.perf_counter()
    run_dir = _run_dir(suite, task, recipe, seed)
    train_seconds, examples_per_second = 0.0, 0.0
    if recipe.derived_from:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        examples_per_second = float(info["examples_per_second"])
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short earlier starts over
        config = run_config(recipe, task, name=run_dir.name, out=str(run_dir.parent), model=suite.model, data=data,
                            seed=seed, steps=suite.steps_for(task), batch_size=suite.batch_size,
                            language_adapters=language_adapters)
        run = train(config, pm=suite.pm, progress=suite.progress)
        train_seconds, examples_per_second = run.wall_seconds, run.examples_per_second
    matrix = transfer_matrix(run_dir, data, split=task.eval_split, languages=task.languages, pm=suite.pm,
                             include_base=False, progress=suite.progress, scale=recipe.scale)
    row = next(r for r in matrix.rows if r.kind != "base")
    metric = matrix.primary
    scores = {lang: row.cells[lang][metric] for lang in task.languages if lang in row.cells}
    targets = [scores[lang] for lang in task.targets if lang in scores]
    return {
        "task": task.name, "recipe": recipe.name, "seed": seed, "metric": metric, "scores": scores,
        "source_score": scores.get(task.source, math.nan), "zero_shot": sum(targets) / len(targets) if targets else math.nan,
        "examples_per_second": examples_per_second, "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1), "steps": suite.steps_for(task),
        "batch_size": suite.batch_size,
        "model": suite.model, "eval_rows": matrix.examples,
        **({"language_adapter_steps": suite.language_adapter_steps} if recipe.language_adapters else {}),
    }


def _run_dir(suite: Suite, task: SuiteTask, recipe: Recipe, seed: int) -> Path:
    """The run folder a recipe's adapters are in (a derived recipe's are its parent's)."""
    return suite.out / "runs" / f"{task.name}-{recipe.derived_from or recipe.name}-s{seed}"


def _source_rows(task: SuiteTask, data: Path) -> int:
    path = Path(data) / f"{task.source}.{task.eval_split}.jsonl"
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _rescore_source(suite: Suite, task: SuiteTask, data: Path, done: dict[tuple[str, str, int], dict[str, Any]],
                    log: Path, console: Any) -> None:
    """Finished runs whose source score came from another number of rows than the suite now evaluates (an older
    suite cut the source like the targets) are scored again on the source's rows from their kept run folder, with
    no retraining; `results.jsonl` is rewritten with the new source scores."""
    from xft_core.evaluation import transfer_matrix

    rows = _source_rows(task, data)
    stale = [(key, r) for key, r in done.items() if key[0] == task.name and key[1] in RECIPES
             and r.get("eval_rows", {}).get(task.source) != rows]
    changed = False
    for (_, recipe_name, seed), result in stale:
        recipe = RECIPES[recipe_name]
        run_dir = _run_dir(suite, task, recipe, seed)
        if not (run_dir / "run.json").is_file():
            continue  # its run folder is gone: the result stays as it was
        started = time.perf_counter()
        matrix = transfer_matrix(run_dir, data, split=task.eval_split, languages=[task.source], pm=suite.pm,
                                 include_base=False, progress=suite.progress, scale=recipe.scale)
        row = next(r for r in matrix.rows if r.kind != "base")
        before = result["source_score"]
        result["scores"][task.source] = result["source_score"] = row.cells[task.source][matrix.primary]
        result["eval_rows"] = {**result.get("eval_rows", {}), task.source: matrix.examples[task.source]}
        result["wall_seconds"] = round(result["wall_seconds"] + time.perf_counter() - started, 1)  # + the new scoring
        changed = True
        console.print(f"{task.name} {recipe_name} seed {seed}: source re-scored on {rows} rows: "
                      f"{before:.3f} -> {result['source_score']:.3f}", highlight=False)
    if changed:
        atomic_write_text(log, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()))


def _language_adapters(suite: Suite, task: SuiteTask, data: Path, console: Any) -> str:
    """MAD-X's language adapters for every language of the task: LM objective on the train texts, once per task."""
    from xft_core.training import train

    run_dir = suite.out / "runs" / f"{task.name}-language-adapters-{suite.language_adapter_steps}"
    if (run_dir / "run.json").is_file():
        return str(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    console.rule(f"[bold]{task.name} / language adapters ({len(task.languages)} languages)")
    train({"name": run_dir.name, "output_dir": str(run_dir.parent), "model": suite.model, "task": "language-modeling",
           "strategy": "lora", "strategy_options": {"r": 16, "alpha": 32, "dropout": 0.05}, "adapters": "per_language",
           "sampler": "round_robin", "data": {"path": str(data), "train_languages": task.languages, "eval_languages": []},
           "training": {"max_steps": suite.language_adapter_steps * len(task.languages), "batch_size": 8,
                        "learning_rate": 5e-4, "max_length": task.max_length, "seed": 0, "log_every": 20},
           "data_check": False}, pm=suite.pm, progress=suite.progress)
    return str(run_dir)


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------- report
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(suite: Suite) -> dict[str, Any]:
    """Per task and recipe: source score and zero-shot mean (mean and std over seeds), gain over the baseline."""
    tasks: dict[str, Any] = {}
    for task_name in suite.tasks:
        task = TASKS[task_name]
        rows = {}
        for recipe_name in suite.recipes:
            results = [r for r in suite.results if r["task"] == task_name and r["recipe"] == recipe_name]
            if not results:
                continue
            source, zero = _mean_std([r["source_score"] for r in results]), _mean_std([r["zero_shot"] for r in results])
            per_language = {lang: _mean_std([r["scores"][lang] for r in results if lang in r["scores"]])[0]
                            for lang in task.languages}
            rows[recipe_name] = {
                "description": RECIPES[recipe_name].description, "seeds": [r["seed"] for r in results],
                "source_mean": source[0], "source_std": source[1], "zero_shot_mean": zero[0], "zero_shot_std": zero[1],
                "per_language": per_language,
                "examples_per_second": statistics.fmean(r["examples_per_second"] for r in results),
                "wall_seconds": statistics.fmean(r["wall_seconds"] for r in results),
            }
        base = rows.get(BASELINE)
        for values in rows.values():
            values["zero_shot_vs_baseline"] = values["zero_shot_mean"] - base["zero_shot_mean"] if base else None
            values["source_vs_baseline"] = values["source_mean"] - base["source_mean"] if base else None
        metric = next((r["metric"] for r in suite.results if r["task"] == task_name), "")
        tasks[task_name] = {"source": task.source, "targets": list(task.targets), "metric": metric, "how": task.how,
                            "steps": suite.steps_for(task), "recipes": rows}
    return {"model": suite.model, "steps": suite.steps or "per task", "batch_size": suite.batch_size, "seeds": suite.seeds,
            "eval_rows": suite.eval_rows or "all", "source_eval_rows": suite.source_eval_rows or "all",
            "baseline": BASELINE, "tasks": tasks, "runs": suite.results}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Cross-lingual transfer suite", "",
             f"Model `{report['model']}`, English source, batch {report['batch_size']}, the same steps for every "
             f"recipe of a task (under its name), seeds {', '.join(map(str, report['seeds']))}; evaluated on "
             f"{report['eval_rows']} rows per target language and {report['source_eval_rows']} of the source; "
             f"scores x100, mean ± std over seeds; 'vs base' is the difference to `{report['baseline']}`.", ""]
    for name, task in report["tasks"].items():
        lines += [f"## {name} ({task['metric']}), {task['steps']} steps", "", task["how"] + ".", "",
                  "| recipe | English | zero-shot avg | vs base (zero-shot) | vs base (English) | examples/s | wall s | seeds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for recipe, r in task["recipes"].items():
            lines.append(
                f"| {recipe} | {_pm(r['source_mean'], r['source_std'])} | {_pm(r['zero_shot_mean'], r['zero_shot_std'])} | "
                f"{_signed(r['zero_shot_vs_baseline'])} | {_signed(r['source_vs_baseline'])} | "
                f"{r['examples_per_second']:.1f} | {r['wall_seconds']:.0f} | {len(r['seeds'])} |")
        languages = [task["source"], *task["targets"]]
        lines += ["", "Per language (mean over seeds):", "", "| recipe | " + " | ".join(languages) + " |",
                  "|---|" + "---:|" * len(languages)]
        for recipe, r in task["recipes"].items():
            lines.append(f"| {recipe} | " + " | ".join(_x100(r["per_language"].get(lang)) for lang in languages) + " |")
        lines += ["", *[f"- `{recipe}`: {r['description']}" for recipe, r in task["recipes"].items()], ""]
    return "\n".join(lines) + "\n"


def _x100(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _pm(mean: float, std: float) -> str:
    return "-" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:+.1f}"
