"""Terminal output in one place: consoles, one progress-bar builder, error lines that never wrap.

Messages that people, tests and scripts read (errors, one line per log step) are printed with `soft_wrap`, so
their text is the same whatever the terminal's width; tables and bars may use the width.
"""

from __future__ import annotations

from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


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
