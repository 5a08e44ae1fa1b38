"""`xft bench transfer`: recipes x seeds x tasks, trained on English under one step budget, evaluated zero-shot.

Recipes come from plugins (`xft_transfer_recipes`). Every (task, recipe, seed) is one `xft train` run (none for a
recipe derived from another one's adapters) and one transfer matrix on the task's evaluation split; its result is
appended to `results.jsonl` at once, so a long suite continues where it stopped (finished runs are not repeated).
The report (report.py) holds, per task and recipe, the English score, the mean over the zero-shot languages (mean
and std over seeds), the difference to the baseline, examples/s, wall time and the extra cost of unlabelled text.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xft_core.bench.recipes import (
    baseline_of,
    check_recipe,
    depth,
    installed_recipes,
    merge,
    parent_of,
    recipe_task,
    run_config,
)
from xft_core.bench.report import markdown, summarise
from xft_core.bench.tasks import TASKS, SuiteTask, task_data
from xft_core.hooks import RecipeSpec
from xft_core.util.errors import UserError
from xft_core.util.files import atomic_write_json, atomic_write_text
from xft_core.util.runfiles import CONFIG, copy_run, is_run_folder, read_jsonl_log

__all__ = ["Suite", "markdown", "run_suite"]


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
    unlabelled_rows: int = 500  # per target language, for recipes that use unlabelled text (0: all there is)
    language_adapter_steps: int = 100  # MAD-X: steps of each language adapter (trained once per task)
    pm: Any = None
    progress: bool = True
    results: list[dict[str, Any]] = field(default_factory=list)

    def installed(self) -> dict[str, RecipeSpec]:
        return installed_recipes(self.pm)

    def check(self) -> dict[str, RecipeSpec]:
        """The installed recipes, after checking that every task and recipe asked for can run."""
        recipes = self.installed()
        unknown = [t for t in self.tasks if t not in TASKS] + [r for r in self.recipes if r not in recipes]
        if unknown:
            raise UserError(f"unknown task or recipe: {', '.join(unknown)}. Tasks: {', '.join(TASKS)}; "
                             f"recipes: {', '.join(recipes)} (`xft bench transfer --list` describes them)")
        for name in self.recipes:
            check_recipe(recipes[name], recipes)
            parent = parent_of(recipes[name])
            if parent and parent not in self.recipes:
                what = "evaluates the adapters" if recipes[name].derived_from else "self-trains from the run"
                raise UserError(f"recipe '{name}' {what} of '{parent}': add it to the recipes")
        return recipes

    def steps_for(self, task: SuiteTask) -> int:
        return self.steps or task.steps


# ------------------------------------------------------------------------------------------------- running
def run_suite(suite: Suite, *, console: Any = None) -> dict[str, Any]:
    """Run every missing (task, recipe, seed), then write `transfer.json` and `transfer.md`; returns the report."""
    from xft_core.util.console import console as make_console

    recipes = suite.check()
    if is_run_folder(suite.out):
        raise UserError(f"--out {suite.out} is a training run folder (it holds {CONFIG}); the suite would write its "
                        "runs, results.jsonl and report into it. Give the suite a folder of its own")
    console = console or make_console(stderr=True)
    suite.out.mkdir(parents=True, exist_ok=True)
    log = suite.out / "results.jsonl"
    done = {(r["task"], r["recipe"], r["seed"]): r for r in _read_results(log)}
    for task_name in suite.tasks:
        task = TASKS[task_name]
        _check_budget(suite, task, [r for r in done.values() if r["task"] == task.name], log)
        chosen = [recipes[r] for r in suite.recipes if task.kind in recipes[r].kinds]
        unlabelled = any("unlabelled" in r.needs for r in chosen)
        # a tagging task keeps every training row: a cut would miss tags its test rows hold (an error there)
        train_rows = suite.train_rows if task.kind == "classification" else 0
        data = task_data(task, suite.data_root, suite.out, eval_rows=suite.eval_rows, train_rows=train_rows,
                         source_eval_rows=suite.source_eval_rows, unlabelled_rows=suite.unlabelled_rows if unlabelled else None)
        _rescore_source(suite, task, data, done, log, console, recipes)
        resources = _prepare(suite, task, data, chosen, console, unlabelled)
        info = recipe_task(task, steps=suite.steps_for(task), batch_size=suite.batch_size, unlabelled=unlabelled,
                           resources=resources, options={"language_adapter_steps": suite.language_adapter_steps})
        for seed in suite.seeds:
            for spec in sorted(chosen, key=lambda r: depth(r, recipes)):  # the runs a recipe needs first
                key = (task.name, spec.name, seed)
                if key in done:
                    continue
                console.rule(f"[bold]{task.name} / {spec.name} / seed {seed}")
                result = _run_one(suite, task, spec, seed, data, info)
                release_memory()  # a long suite runs dozens of runs in one process
                done[key] = result
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(result, ensure_ascii=False) + "\n")
                console.print(f"{task.name} {spec.name} seed {seed}: source {result['source_score']:.3f}, "
                              f"zero-shot {result['zero_shot']:.3f} ({result['wall_seconds']:.0f} s)", highlight=False)
    suite.results = [done[k] for k in sorted(done) if k[0] in suite.tasks and k[1] in suite.recipes and k[2] in suite.seeds]
    report = summarise(suite, recipes, baseline_of(recipes))
    atomic_write_json(suite.out / "transfer.json", report)
    atomic_write_text(suite.out / "transfer.md", markdown(report))
    return report


def release_memory() -> None:
    """Free what the finished run held (models, optimizer state) and give freed heap back to the system, so the
    suite's memory does not grow run after run."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its pages, nothing is lost
        pass


def _check_budget(suite: Suite, task: SuiteTask, finished: list[dict[str, Any]], log: Path) -> None:
    """Finished runs count only under the budget they ran with: a suite asking for other steps or another batch
    size in the same folder is refused, since it would mix budgets in one table (its run folders carry no budget)."""
    asked = (suite.steps_for(task), suite.batch_size)
    other = sorted({(r.get("steps"), r.get("batch_size")) for r in finished} - {asked}, key=str)
    if other:
        held = ", ".join(f"{steps} steps of batch {batch}" for steps, batch in other)
        raise UserError(f"{log} holds {task.name} runs of {held}; this suite asks for {asked[0]} steps of batch "
                         f"{asked[1]}. Give another --out, or the same --steps and --batch-size")


def _run_one(suite: Suite, task: SuiteTask, spec: RecipeSpec, seed: int, data: Path, info: Any) -> dict[str, Any]:
    from xft_core.evaluation import transfer_matrix
    from xft_core.training import train

    started = time.perf_counter()
    run_dir = _run_dir(suite, task, spec, seed)
    train_seconds, examples_per_second, extra = 0.0, 0.0, {}
    if spec.derived_from:
        parent = _runs(suite, task, spec.derived_from, seed)
        summary = json.loads((parent / "run.json").read_text(encoding="utf-8"))
        examples_per_second = float(summary["examples_per_second"])
        extra = _cost(summary)
        if run_dir != parent:  # calibrated: a copy of its adapters of its own, the parent's stay as trained
            copy_run(parent, run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short earlier starts over
        teacher = str(_runs(suite, task, spec.teacher_from, seed)) if spec.teacher_from else ""
        config = run_config(spec, task, info, name=run_dir.name, out=str(run_dir.parent), model=suite.model,
                            data=str(data), seed=seed, steps=suite.steps_for(task), batch_size=suite.batch_size,
                            teacher=teacher)
        run = train(config, pm=suite.pm, progress=suite.progress)
        train_seconds, examples_per_second = run.wall_seconds, run.examples_per_second
        extra = _cost(json.loads((run_dir / "run.json").read_text(encoding="utf-8")))
    method = spec.evaluation.get("calibration")
    if method:
        from xft_core.evaluation import calibrate

        estimated = calibrate(run_dir, data, languages=list(task.targets), split=task.unlabelled_split, method=method,
                              pm=suite.pm, progress=suite.progress)
        extra["unlabelled_forward_rows"] = extra.get("unlabelled_forward_rows", 0) + estimated.forward_rows
    matrix = transfer_matrix(run_dir, data, split=task.eval_split, languages=task.languages, pm=suite.pm,
                             include_base=False, progress=suite.progress, scale=spec.evaluation.get("scale"))
    row = next(r for r in matrix.rows if r.kind != "base")
    metric = matrix.primary
    scores = {lang: row.cells[lang][metric] for lang in task.languages if lang in row.cells}
    targets = [scores[lang] for lang in task.targets if lang in scores]
    return {
        "task": task.name, "recipe": spec.name, "seed": seed, "metric": metric, "scores": scores,
        "source_score": scores.get(task.source, math.nan), "zero_shot": sum(targets) / len(targets) if targets else math.nan,
        "examples_per_second": examples_per_second, "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1), "steps": suite.steps_for(task),
        "batch_size": suite.batch_size, "model": suite.model, "eval_rows": matrix.examples, "needs": list(spec.needs),
        **extra,
        **({"resources": dict(info.resources)} if spec.prepare else {}),
    }


def _cost(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run spent besides its labelled budget, from its run.json (self-training writes it there)."""
    extra = summary.get("extra_cost") or {}
    return {key: extra[key] for key in ("unlabelled_forward_rows", "extra_train_steps") if key in extra}


def _run_dir(suite: Suite, task: SuiteTask, spec: RecipeSpec, seed: int) -> Path:
    """The run folder a recipe's adapters are in: a derived recipe that only rescales evaluates its parent's
    folder; one that changes the packages (calibration) has a copy of its own."""
    name = spec.derived_from if spec.derived_from and "calibration" not in spec.evaluation else spec.name
    return _runs(suite, task, name, seed)


def _runs(suite: Suite, task: SuiteTask, recipe: str, seed: int) -> Path:
    """The run folder of `recipe` on `task` and `seed`."""
    return suite.out / "runs" / f"{task.name}-{recipe}-s{seed}"


def _source_rows(task: SuiteTask, data: Path) -> int:
    path = Path(data) / f"{task.source}.{task.eval_split}.jsonl"
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _rescore_source(suite: Suite, task: SuiteTask, data: Path, done: dict[tuple[str, str, int], dict[str, Any]],
                    log: Path, console: Any, recipes: dict[str, RecipeSpec]) -> None:
    """Finished runs whose source score came from another number of rows than the suite now evaluates (an older
    suite cut the source like the targets) are scored again on the source's rows from their kept run folder, with
    no retraining; `results.jsonl` is rewritten with the new source scores."""
    from xft_core.evaluation import transfer_matrix

    rows = _source_rows(task, data)
    stale = [(key, r) for key, r in done.items() if key[0] == task.name and key[1] in recipes
             and r.get("eval_rows", {}).get(task.source) != rows]
    changed = False
    for (_, recipe_name, seed), result in stale:
        spec = recipes[recipe_name]
        run_dir = _run_dir(suite, task, spec, seed)
        if not (run_dir / "run.json").is_file():
            continue  # its run folder is gone: the result stays as it was
        started = time.perf_counter()
        matrix = transfer_matrix(run_dir, data, split=task.eval_split, languages=[task.source], pm=suite.pm,
                                 include_base=False, progress=suite.progress, scale=spec.evaluation.get("scale"))
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


def _prepare(suite: Suite, task: SuiteTask, data: Path, chosen: list[RecipeSpec], console: Any,
             unlabelled: bool) -> dict[str, str]:
    """The runs recipes ask to be trained once per task before theirs (`RecipeSpec.prepare`: MAD-X's language
    adapters), each in `runs/<task>-<name>`, kept and reused; name -> run folder."""
    from xft_core.training import train

    info = recipe_task(task, steps=suite.steps_for(task), batch_size=suite.batch_size, unlabelled=unlabelled,
                       options={"language_adapter_steps": suite.language_adapter_steps})
    folders: dict[str, str] = {}
    for spec in chosen:
        if spec.prepare is None:
            continue
        for name, fragment in spec.prepare(info).items():
            run_dir = suite.out / "runs" / f"{task.name}-{name}"
            folders[name] = str(run_dir)
            if (run_dir / "run.json").is_file():
                continue
            shutil.rmtree(run_dir, ignore_errors=True)
            console.rule(f"[bold]{task.name} / {name} (for {spec.name})")
            base = {"name": run_dir.name, "output_dir": str(run_dir.parent), "model": suite.model,
                    "data": {"path": str(data)}, "data_check": False}
            train(merge(base, fragment), pm=suite.pm, progress=suite.progress)
    return folders


def _read_results(path: Path) -> list[dict[str, Any]]:
    """The finished runs in results.jsonl. A cut-off last line (a suite killed while appending) is dropped from the
    file with a warning, so that run is repeated; any other line that is not a JSON object is an error naming file
    and line."""
    return read_jsonl_log(path, what="finished run's record", drop_torn="so that run is done again")
