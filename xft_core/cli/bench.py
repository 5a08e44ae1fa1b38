"""`xft bench transfer`: the cross-lingual transfer suite (recipes x seeds x tasks, English source, zero-shot)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xft_core.cli.options import deprecated_alias
from xft_core.hooks import CommandSpec, hookimpl

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside a checkout


@hookimpl
def xft_commands():
    yield CommandSpec(name="bench", register=register, description="benchmarks: the cross-lingual transfer suite")


def register(subparsers: Any) -> None:
    from xft_core.bench.tasks import TASKS

    bench = subparsers.add_parser("bench", help="benchmarks (xft bench transfer)", description="Benchmarks.")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="COMMAND")
    bench.set_defaults(func=lambda args: bench.print_help() or 0)
    p = bench_sub.add_parser(
        "transfer", help="recipes x seeds on SIB-200, XNLI and UD POS: English source, zero-shot targets",
        description="Train every recipe on the English source of each task under one step budget, evaluate zero-shot on "
        "the other languages, and report per recipe: English score, zero-shot average (mean and std over seeds), the "
        "difference to the baseline, examples/s and wall time (transfer.md, transfer.json). Finished runs are kept in "
        "results.jsonl and not repeated, so a stopped suite continues where it was. Recipes come from plugins "
        "(hook xft_transfer_recipes): `xft bench transfer --list` describes the installed ones.",
    )
    p.add_argument("--tasks", nargs="+", default=["sib200", "xnli"], choices=list(TASKS), metavar="TASK",
                   help=f"tasks (default: sib200 xnli; one of {', '.join(TASKS)})")
    p.add_argument("--recipes", nargs="+", default=None, metavar="RECIPE",
                   help="recipes (default: those their plugins mark as default; --list shows them)")
    p.add_argument("--list", action="store_true",
                   help="list the installed recipes (name, plugin, task kinds, what they need, description) and exit")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="SEED",
                   help="training seeds of every recipe (default: 0 1 2)")
    p.add_argument("--steps", type=int, default=0,
                   help="training steps of every recipe (default: each task's own budget: "
                        + ", ".join(f"{name} {task.steps}" for name, task in TASKS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=16, help="training batch size of every recipe (default 16)")
    p.add_argument("--max-examples", type=int, default=0, metavar="N",
                   help="evaluation rows per target language, drawn across the file reproducibly (the sampler of "
                        "`xft eval --max-examples`; 0: all)")
    deprecated_alias(p, "--eval-rows", "--max-examples", dest="max_examples", type=int, metavar="N")
    deprecated_alias(p, "--source-eval-rows", "--source-max-examples", dest="source_max_examples", type=int, metavar="N")
    p.add_argument("--source-max-examples", type=int, default=0, metavar="N",
                   help="evaluation rows of the source language (default 0: all; its score is one language, not an "
                        "average, so it needs more rows than each target). Finished runs scored on other rows are "
                        "re-scored from their run folders without training")
    p.add_argument("--unlabelled-rows", type=int, default=500, metavar="N",
                   help="target-language rows without labels for recipes that use unlabelled text, drawn across rows "
                        "disjoint from training and evaluation (default 500; 0: all there are)")
    p.add_argument("--language-adapter-steps", type=int, default=100, metavar="N",
                   help="MAD-X: training steps of each language's adapter, batch 8 (default 100; trained once per task)")
    p.add_argument("--model", default="gemma3-270m", help="base model (default: the embedded Gemma 3 270M)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"folder with sib200/, nli/, ud_pos/ (default {DEFAULT_DATA})")
    p.add_argument("--out", type=Path, default=Path("runs/bench-transfer"), help="output folder (runs, results, report)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny offline model, 4 steps, 8 rows per language, one seed: checks the suite end to end in a minute")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    from xft_core.bench.recipes import default_recipes, installed_recipes
    from xft_core.bench.transfer import Suite, markdown, run_suite
    from xft_core.util.console import console

    if args.list:
        return list_recipes()
    recipes = list(args.recipes) if args.recipes else default_recipes(installed_recipes())
    suite = Suite(tasks=list(args.tasks), recipes=recipes, seeds=list(args.seeds), out=args.out,
                  data_root=args.data, model=args.model, steps=args.steps, batch_size=args.batch_size,
                  eval_rows=args.max_examples, source_eval_rows=args.source_max_examples, unlabelled_rows=args.unlabelled_rows,
                  language_adapter_steps=args.language_adapter_steps, progress=not args.no_progress)
    from xft_core.util.lock import hold_folder

    with hold_folder(suite.out, "xft bench transfer"):  # a second suite on this folder stops here, naming this one
        if args.quick:
            from xft_core.bench.quick import quick_suite

            suite = quick_suite(suite)
        report = run_suite(suite)
    console().print(markdown(report), highlight=False, soft_wrap=True, markup=False)
    console().print(f"report: {args.out / 'transfer.md'}, {args.out / 'transfer.json'}", highlight=False)
    return 0


def list_recipes() -> int:
    """One block per installed recipe, never wrapped (scripts grep it)."""
    from xft_core.bench.recipes import baseline_of, installed_recipes, recipe_plugins
    from xft_core.util.console import console

    recipes, plugins = installed_recipes(), recipe_plugins()
    baseline = baseline_of(recipes)
    out = console()
    for name, spec in recipes.items():
        marks = [m for m, on in (("baseline", name == baseline), ("default", spec.default)) if on]
        out.print(f"{name}  [plugin {plugins[name]}] kinds: {', '.join(spec.kinds)}; needs: "
                  f"{', '.join(spec.needs) or 'labelled source rows only'}"
                  + (f"; evaluates the adapters of {spec.derived_from}" if spec.derived_from else "")
                  + (f"; self-trains from the run of {spec.teacher_from}" if spec.teacher_from else "")
                  + (f" ({', '.join(marks)})" if marks else ""), highlight=False, soft_wrap=True, markup=False)
        out.print(f"    {spec.description}", highlight=False, soft_wrap=True, markup=False)
    return 0
