"""`xft` command line: train, eval, predict, serve, data check, plugins.

Heavy imports happen inside each command, so `xft --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xft_core import __version__


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


# ------------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xft_core.config import parse_overrides
    from xft_core.training.engine import train

    run = train(args.config, overrides=parse_overrides(args.set), resume=args.resume, progress=not args.no_progress)
    if not run.accelerator.is_main_process:
        return 0
    console = _console()
    table = Table(title=f"xft run '{run.config.name}': {run.step} steps, {run.examples_per_second:.1f} examples/s, {run.wall_seconds:.0f} s")
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
    console.print(table)
    for name, folder in run.adapter_dirs.items():
        console.print(f"adapter [bold]{name}[/]: {folder}")
    console.print(f"run folder: {run.paths.root}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xft_core.hooks.manager import collect, get_plugin_manager, plugin_distribution
    from xft_core.hooks.descriptors import KINDS, SINGULAR

    pm = get_plugin_manager()
    table = Table(title="xft plugins")
    for column in ("plugin", "distribution", "version", "provides"):
        table.add_column(column)
    provided: dict[str, list[str]] = {}
    for kind in KINDS:
        for name, item in collect(pm, kind).items():
            provided.setdefault(item.plugin, []).append(f"{SINGULAR[kind]}: {name}")
    for plugin_name, _ in sorted(pm.list_name_plugin(), key=lambda x: x[0] or ""):
        dist, version = plugin_distribution(pm, plugin_name)
        table.add_row(plugin_name, dist, version, "\n".join(provided.get(plugin_name, [])) or "(hooks only)")
    _console().print(table)
    if args.verbose:
        for kind in KINDS:
            for name, item in sorted(collect(pm, kind).items()):
                description = getattr(item.spec, "description", "")
                _console().print(f"[bold]{SINGULAR[kind]}[/] {name}: {description}")
    return 0


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xft",
        description="Cross-lingual fine-tuning: train per-language adapters, measure transfer, hot-swap at inference.",
    )
    parser.add_argument("--version", action="version", version=f"xft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="fine-tune from a YAML config", description="Fine-tune from a YAML config.")
    p.add_argument("config", help="path to the run config (YAML)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. --set training.max_steps=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plugins", help="list installed plugins and what they provide")
    p.add_argument("-v", "--verbose", action="store_true", help="also describe every strategy, sampler, head, source and metric")
    p.set_defaults(func=cmd_plugins)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Any]:
    """Sub-commands of other xft_core modules and of `xft_commands` plugins."""
    registers = []
    for module in ("xft_core.evaluation.matrix", "xft_core.cli.predict", "xft_core.inference.server", "xft_core.cli.data"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registers.append(mod.register)
    from xft_core.hooks.manager import collect, get_plugin_manager

    registers.extend(item.spec.register for item in collect(get_plugin_manager(), "commands").values())
    return registers


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from xft_core.adapters import AdapterError
    from xft_core.config import ConfigError
    from xft_core.data import DataError
    from xft_core.hooks.manager import PluginError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, PluginError, AdapterError, FileExistsError, FileNotFoundError) as exc:
        # one line per message whatever the terminal's width: errors are read by people, tests and scripts
        _console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        _console(stderr=True).print("[yellow]interrupted[/]: the last complete checkpoint is intact; continue with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
