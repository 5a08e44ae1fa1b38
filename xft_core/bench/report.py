"""The suite's report: per task and recipe, the source score and the zero-shot mean (mean and std over seeds), the
difference to the baseline recipe, speed and the extra cost of what a recipe uses besides labelled source rows."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from xft_core.bench.tasks import TASKS


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(suite: Any, recipes: dict[str, Any], baseline: str) -> dict[str, Any]:
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
            spec = recipes.get(recipe_name)
            rows[recipe_name] = {
                "description": spec.description if spec else "", "needs": list(spec.needs) if spec else [],
                "seeds": [r["seed"] for r in results],
                "source_mean": source[0], "source_std": source[1], "zero_shot_mean": zero[0], "zero_shot_std": zero[1],
                "per_language": per_language,
                "examples_per_second": statistics.fmean(r["examples_per_second"] for r in results),
                "wall_seconds": statistics.fmean(r["wall_seconds"] for r in results),
                # the cost of what the recipe uses besides the labelled budget: forward passes over unlabelled text
                "unlabelled_forward_rows": statistics.fmean(r.get("unlabelled_forward_rows", 0) for r in results),
                "extra_train_steps": statistics.fmean(r.get("extra_train_steps", 0) for r in results),
            }
        base = rows.get(baseline)
        for values in rows.values():
            values["zero_shot_vs_baseline"] = values["zero_shot_mean"] - base["zero_shot_mean"] if base else None
            values["source_vs_baseline"] = values["source_mean"] - base["source_mean"] if base else None
        metric = next((r["metric"] for r in suite.results if r["task"] == task_name), "")
        tasks[task_name] = {"source": task.source, "targets": list(task.targets), "metric": metric, "how": task.how,
                            "unlabelled_how": task.unlabelled_how, "steps": suite.steps_for(task), "recipes": rows,
                            "sampling": sampling_note(task, suite.eval_rows)}
    return {"model": suite.model, "steps": suite.steps or "per task", "batch_size": suite.batch_size, "seeds": suite.seeds,
            "eval_rows": suite.eval_rows or "all", "source_eval_rows": suite.source_eval_rows or "all",
            "baseline": baseline, "tasks": tasks, "runs": suite.results}


def sampling_note(task: Any, eval_rows: int) -> str:
    """What a cut evaluation leaves out of the table's ± (empty when every row is evaluated)."""
    if not eval_rows:
        return ""
    same = (f"the same {eval_rows} lines in every target language and every seed (the sets are parallel), so the "
            f"zero-shot average rests on {eval_rows} items" if task.parallel else
            f"the same {eval_rows} lines of each target language for every seed")
    return (f"Each target is scored on {same}: the ± is the spread over seeds only and leaves out the sampling of "
            "those lines, and a difference of a few points between recipes may not hold on the whole split. "
            "`benchmarks/rescore.py` scores a recipe's runs on every row, with intervals over the items")


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Cross-lingual transfer suite", "",
             f"Model `{report['model']}`, English source, batch {report['batch_size']}, the same steps for every "
             f"recipe of a task (under its name), seeds {', '.join(map(str, report['seeds']))}; evaluated on "
             f"{report['eval_rows']} rows per target language and {report['source_eval_rows']} of the source; "
             f"scores x100, mean ± std over seeds; 'vs base' is the difference to `{report['baseline'] or '-'}`. "
             "'unlabelled rows' counts the forward passes a recipe made over target-language text without labels, "
             "'extra steps' the training steps beyond the labelled budget.", ""]
    for name, task in report["tasks"].items():
        lines += [f"## {name} ({task['metric']}), {task['steps']} steps", "", task["how"] + ".", ""]
        if any("unlabelled" in r["needs"] for r in task["recipes"].values()) and task.get("unlabelled_how"):
            lines += [f"Unlabelled target text: {task['unlabelled_how']}.", ""]
        if task.get("sampling"):
            lines += [task["sampling"] + ".", ""]
        lines += ["| recipe | English | zero-shot avg | vs base (zero-shot) | vs base (English) | examples/s | wall s | "
                  "unlabelled rows | extra steps | seeds |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for recipe, r in task["recipes"].items():
            lines.append(
                f"| {recipe} | {_pm(r['source_mean'], r['source_std'])} | {_pm(r['zero_shot_mean'], r['zero_shot_std'])} | "
                f"{_signed(r['zero_shot_vs_baseline'])} | {_signed(r['source_vs_baseline'])} | "
                f"{r['examples_per_second']:.1f} | {r['wall_seconds']:.0f} | {r['unlabelled_forward_rows']:.0f} | "
                f"{r['extra_train_steps']:.0f} | {len(r['seeds'])} |")
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
