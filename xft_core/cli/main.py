"""`xft` command line. Every sub-command, xft's own included, is declared through the `xft_commands` hook.

xft's own command modules are registered as plugins under their module names (as pytest registers its
built-in plugins), then entry-point plugins add theirs; heavy imports happen inside each command, so
`xft --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Any

from xft_core.util.console import console, print_error
from xft_core.version import __version__

CORE_COMMANDS = (
    "xft_core.cli.train",
    "xft_core.cli.eval",
    "xft_core.cli.predict",
    "xft_core.cli.serve",
    "xft_core.cli.data",
    "xft_core.cli.bench",
    "xft_core.cli.plugins",
)


def plugin_manager() -> Any:
    """The process-wide plugin manager with xft's own commands registered (once)."""
    from xft_core.hooks.manager import get_plugin_manager

    pm = get_plugin_manager()
    for name in CORE_COMMANDS:
        if not pm.has_plugin(name) and not pm.is_blocked(name):
            pm.register(import_module(name), name=name)
    return pm


def build_parser() -> argparse.ArgumentParser:
    from xft_core.hooks.manager import collect

    parser = argparse.ArgumentParser(
        prog="xft",
        description="Cross-lingual fine-tuning: train per-language adapters, measure transfer, hot-swap at inference.",
    )
    parser.add_argument("--version", action="version", version=f"xft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for provided in collect(plugin_manager(), "commands").values():
        provided.spec.register(sub)
    return parser


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
        print_error(str(exc))
        return 2
    except KeyboardInterrupt:
        console(stderr=True).print("[yellow]interrupted[/]: the last complete checkpoint is intact; continue with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
