"""`xft` command line. Every sub-command, xft's own included, is declared through the `xft_commands` hook.

xft's own command modules are registered as plugins under their module names (as pytest registers its
built-in plugins), then entry-point plugins add theirs; heavy imports happen inside each command, so
`xft --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from importlib import import_module
from typing import Any

from rich.markup import escape

from xft_core.config.load import ConfigWarning
from xft_core.data.readers import DataWarning
from xft_core.hooks.manager import PluginError
from xft_core.util.console import console, print_error
from xft_core.util.fingerprint import FingerprintWarning
from xft_core.util.lock import StaleLockWarning
from xft_core.version import __version__

# warnings printed as `warning:` lines (others keep Python's format)
WARNINGS = (DataWarning, ConfigWarning, StaleLockWarning, FingerprintWarning)

CORE_COMMANDS = (
    "xft_core.cli.train",
    "xft_core.cli.eval",
    "xft_core.cli.calibrate",
    "xft_core.cli.predict",
    "xft_core.cli.serve",
    "xft_core.cli.data",
    "xft_core.cli.bench",
    "xft_core.cli.plugins",
    "xft_core.cli.doctor",
    "xft_core.cli.export",
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
    """Run one command. Errors the user can fix print one `error:` line (never wrapped at the terminal width) and
    exit 2; a bug prints one line asking to report it and exits 1; XFT_DEBUG=1 adds the traceback. xft's own
    warnings (data, config, a taken-over lock, ...) print as `warning:` lines."""
    with warnings.catch_warnings():
        for category in WARNINGS:
            warnings.simplefilter("default", category)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
            if issubclass(category, WARNINGS):
                print_warning(str(message))
            else:
                shown(message, category, *rest, **kwargs)

        warnings.showwarning = show
        try:
            parser = build_parser()
        except PluginError as exc:  # an entry point that fails to import names itself
            return report(exc)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            console(stderr=True).print("[yellow]interrupted[/]: the last complete checkpoint is intact; continue with --resume")
            return 130
        except SystemExit as exc:
            return report_exit(exc, args.command)
        except Exception as exc:
            return report(exc)


def report(exc: BaseException) -> int:
    """Print one error line for `exc` and return the exit status.

    2: an error raised for the user (`UserError`: config, data, package, plugin choice, a held folder; an
    `OSError`: a missing file, a full disk), or a `ValueError` a plugin raises itself (the way plugins reject
    their options and inputs). 1: anything else, a bug in xft or in the plugin named, with a request to report it;
    out of memory says so and what to lower."""
    from xft_core.util.errors import UserError

    debug = os.environ.get("XFT_DEBUG", "") not in ("", "0", "false")
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    hint = "" if debug else " (rerun with XFT_DEBUG=1 for the traceback)"
    if isinstance(exc, (UserError, OSError)):
        print_error(_printable(str(exc)))
        return 2
    plugin = _plugin_of(exc)
    if _out_of_memory(exc):
        where = f" in {plugin}" if plugin else ""
        print_error(_printable(f"out of memory{where} ({type(exc).__name__}: {exc}). Lower the batch size "
                               f"(training.batch_size, --batch-size) or max_length, or use a smaller model{hint}"))
        return 1
    if plugin and isinstance(exc, ValueError) and _raised_by_statement(exc):
        print_error(_printable(f"{plugin} raised {type(exc).__name__}: {exc}{hint}"))
        return 2
    owner = f"{plugin}, a bug in that plugin" if plugin else "a bug in xft"
    print_error(_printable(f"internal error, {type(exc).__name__}: {exc} ({owner}). Please report it"
                           + (" with the traceback above" if debug else ", with the traceback that XFT_DEBUG=1 prints")))
    return 1


def report_exit(exc: SystemExit, command: str) -> int:
    """A command's code called sys.exit: xft's commands return their status, so it came from a plugin (or a
    library) and would end `xft` with no word; say who, exit 1."""
    plugin = _plugin_of(exc)
    who = plugin or "code xft called"
    print_error(_printable(f"{who} ended the process with SystemExit({exc.code!r}) during `xft {command}`, so the "
                           f"command did not finish. Please report it to {'that plugin' if plugin else 'xft'}"))
    return 1


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _raised_by_statement(exc: BaseException) -> bool:
    """True when the innermost frame raised `exc` with a `raise` statement (a plugin rejecting a value), not a
    builtin or library call failing on the line."""
    import linecache

    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise ")


def print_warning(message: str) -> None:
    """`warning: <message>` on stderr, never wrapped at the terminal width."""
    console(stderr=True).print(f"[yellow]warning:[/] {escape(_printable(message))}", highlight=False, soft_wrap=True)


def _printable(message: str) -> str:
    """The message with rich markup escaped (print_error reads markup) and lone surrogates written as escapes."""
    return escape(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def _plugin_of(exc: BaseException) -> str | None:
    """`plugin 'name' (distribution)` when a registered plugin's code is in the traceback, else None."""
    from xft_core.hooks.manager import describe_plugin, get_plugin_manager, plugin_in_traceback

    try:
        pm = get_plugin_manager()
        name = plugin_in_traceback(pm, exc.__traceback__)
        return describe_plugin(pm, name) if name else None
    except Exception:  # naming the plugin is a courtesy; the error itself is still printed
        return None


if __name__ == "__main__":
    sys.exit(main())
