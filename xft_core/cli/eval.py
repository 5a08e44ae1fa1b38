"""`xft eval`: the cross-lingual transfer matrix of runs and adapter packages, with reports."""

from __future__ import annotations

import argparse
from typing import Any

from xft_core.cli.options import add_precision, chosen_precision
from xft_core.hooks import CommandSpec, hookimpl


@hookimpl
def xft_commands():
    yield CommandSpec(name="eval", register=register, description="transfer matrix: every adapter on every language")


def parse_scale(text: str | None) -> float | dict[str, float] | None:
    """`--scale 0.5` (every language) or `--scale de=0.5,sw=0.3,*=0.8` (per language, `*` for the rest)."""
    from xft_core.config import ConfigError

    if not text:
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        return {key.strip(): float(value) for key, value in pairs}
    except ValueError:
        raise ConfigError(f"--scale {text!r}: give a number in [0, 1] (0.5) or language=number pairs "
                          "(de=0.5,*=0.8)") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from xft_core.evaluation import evaluate, print_table
    from xft_core.util.console import console as make_console

    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()] if args.languages else None
    precision = chosen_precision(args.precision, args.sources[0], args.device)
    result = evaluate(args.sources, args.data, out=args.out, metric=args.metric, languages=languages, split=args.split,
                      include_base=args.base, each_adapter=args.each_adapter, max_examples=args.max_examples,
                      batch_size=args.batch_size, max_length=args.max_length, device=args.device, precision=precision,
                      progress=not args.no_progress, scale=parse_scale(args.scale), calibrated=not args.no_calibration)
    if args.json:
        import json
        import sys

        sys.stdout.write(json.dumps({**result.matrix.to_dict(), "reports": {k: str(p) for k, p in result.paths.items()}},
                                    ensure_ascii=False, indent=2) + "\n")
        return 0
    console = make_console()
    print_table(result.matrix, console, metric=args.metric)
    for kind, path in result.paths.items():
        console.print(f"{kind}: {path}", highlight=False, soft_wrap=True)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="transfer matrix: every adapter on every language, with reports",
        description="Evaluate adapters (rows) on every language (columns) and write report/transfer.{json,csv,md,png}.",
    )
    p.add_argument("sources", nargs="+", metavar="RUN_OR_ADAPTER",
                   help="run folders (runs/<name>), their adapters/ folders, and/or adapter packages")
    p.add_argument("--data", help="data folder or file (default: the first run's config data.path)")
    p.add_argument("--languages", help="comma-separated evaluation languages (default: every language with the split)")
    p.add_argument("--split", help="data split to evaluate (default: the config's data.test_split, 'test')")
    p.add_argument("--metric", help="metric of the heatmap, Markdown order and terminal table (default: the head's primary)")
    p.add_argument("--out", help="report folder (default: <first run>/report)")
    p.add_argument("--max-examples", type=int, default=0, metavar="N",
                   help="at most N examples per language (0: all), drawn across the file reproducibly and stratified "
                        "by label where there is one, not the first N (the same rows as data.max_eval_examples)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default 32)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per example (default: the run's training.max_length)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    add_precision(p)
    base = p.add_mutually_exclusive_group()
    base.add_argument("--no-base", dest="base", action="store_const", const=False, help="no zero-shot base row")
    base.add_argument("--base", dest="base", action="store_const", const=True,
                      help="add the base row even for heads with untrained weights (classification)")
    p.add_argument("--each-adapter", action="store_true", help="per-language runs: one row per adapter besides the combined row")
    p.add_argument("--scale", metavar="S",
                   help="interpolate each adapter toward the base (WiSE-FT): 0 is the base, 1 the adapter as trained; "
                        "one number, or per language: de=0.5,*=0.8")
    p.add_argument("--no-calibration", action="store_true",
                   help="score packages raw, without the per-language label prior `xft calibrate` stored in them")
    p.add_argument("--json", action="store_true",
                   help="print the matrix as JSON on stdout (what report/transfer.json holds, plus the report paths) "
                        "instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval, base="auto")
