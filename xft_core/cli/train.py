"""`xft train`: fine-tune from a YAML config, with `--set` overrides and `--resume`."""

from __future__ import annotations

import argparse
from typing import Any

from xft_core.hooks import CommandSpec, hookimpl
from xft_core.util.console import console, print_line


@hookimpl
def xft_commands():
    yield CommandSpec(name="train", register=register, description="fine-tune from a YAML config")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="fine-tune from a YAML config", description="Fine-tune from a YAML config.")
    p.add_argument("config", help="path to the run config (YAML)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.max_steps=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xft_core.config import load_config, parse_overrides
    from xft_core.training import train
    from xft_core.util.lock import hold_folder

    config = load_config(args.config, parse_overrides(args.set))
    with hold_folder(config.run_dir, "xft train"):  # a second `xft train` on this folder stops here, naming this one
        run = train(config, resume=args.resume, progress=not args.no_progress)
    if not run.accelerator.is_main_process:
        return 0
    out = console()
    # the title as its own line: a table title wraps at the table's width, which cut it mid-path in logs
    print_line(out, f"xft run '{run.config.name}': {run.step} steps, {run.examples_per_second:.1f} examples/s, "
                    f"{run.wall_seconds:.0f} s")
    table = Table()
    table.add_column("language")
    names = list(run.head.metric_names)
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("examples drawn", justify="right")
    for language in sorted(set(run.metrics) | set(run.sampler.counts)):
        metrics = run.metrics.get(language, {})
        table.add_row(
            language,
            *[f"{metrics[n]:.4f}" if n in metrics else "-" for n in names],
            str(run.sampler.counts.get(language, 0)),
        )
    out.print(table)
    for name, folder in run.adapter_dirs.items():
        print_line(out, f"adapter {name}: {folder}")
    print_line(out, f"run folder: {run.paths.root}")
    return 0
