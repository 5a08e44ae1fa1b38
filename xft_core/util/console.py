"""Terminal output in one place: consoles, one progress-bar builder, error lines that never wrap.

Messages that people, tests and scripts read (errors, one line per log step) are printed with `soft_wrap`, so
their text is the same whatever the terminal's width; tables and bars may use the width. Output that is not a
terminal (a pipe, a log file) is never wrapped or cut at all: `xft plugins | grep sequence-classification`
finds the name, and paths in a log stay on one line.
"""

from __future__ import annotations

import functools
from typing import Any

# the width of a console that writes to a pipe or file: wide enough that nothing wraps or is cut
UNBOUNDED = 1 << 16


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): the terminal's width on a terminal, unbounded elsewhere."""
    from rich.console import Console

    out = Console(stderr=stderr)
    return out if out.is_terminal else _unwrapped()(stderr=stderr, width=UNBOUNDED)


@functools.cache
def _unwrapped() -> Any:
    from rich.console import Console

    class UnwrappedConsole(Console):
        """A console for pipes and files: nothing wraps and no cell is cut; a rule is its title between two short
        bars (a rule across the unbounded width would be 65,536 characters)."""

        def rule(self, title: Any = "", *args: Any, **kwargs: Any) -> None:
            self.print(f"── {title} ──" if title else "──────", highlight=False, soft_wrap=True)

    return UnwrappedConsole


def print_error(message: str, out: Any = None) -> None:
    """`error: <message>` on stderr, on as many lines as the message has, never wrapped at the terminal width."""
    (out or console(stderr=True)).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def print_line(out: Any, message: str) -> None:
    """A plain log line (no markup, no wrapping)."""
    out.print(message, highlight=False, soft_wrap=True, markup=False)


def progress(out: Any, *fields: str, enabled: bool = True, transient: bool = False) -> Any:
    """A rich progress bar: description, bar, n/N, the given task fields (`"loss {task.fields[loss]}"`), elapsed
    and remaining time. Disabled, it accepts the same calls and draws nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(field) for field in fields]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=out or console(stderr=True), disable=not enabled, transient=transient)
