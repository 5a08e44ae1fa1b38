"""What several commands share: one spelling per option (issue 22's vocabulary), and the precision every
scoring command uses and prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PRECISIONS = ["auto", "no", "bf16", "fp16"]


def add_precision(p: Any) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="autocast for the forwards (default: the run's training.precision, so a score here is the score "
                        "training logged and `xft eval`, `predict` and `serve` give; auto = bf16 where the hardware "
                        "has it, no = full precision)")


def chosen_precision(given: str | None, source: str | Path, device: Any = None, *, out: Any = None) -> str:
    """The precision to run in (`given`, else the run's own) resolved for this machine, printed once on stderr."""
    from xft_core.adapters import trained_precision
    from xft_core.util.console import console, print_line
    from xft_core.util.precision import resolve_precision

    setting, where = (given, "--precision") if given else trained_precision(Path(source).expanduser())
    resolved = resolve_precision(setting, device)
    shown = resolved if resolved == setting else f"{resolved} ({setting} on this machine)"
    print_line(out or console(stderr=True), f"precision: {shown}, from {where}")
    return resolved


def deprecated_alias(p: Any, old: str, new: str, **kwargs: Any) -> None:
    """`old` still works (scripts use it) and says once that `new` is the name; hidden from --help."""
    class DeprecatedAlias(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            import warnings

            from xft_core.config.load import ConfigWarning

            warnings.warn(ConfigWarning(f"{old} is deprecated; use {new}"), stacklevel=2)  # a `warning:` line
            setattr(namespace, self.dest, values)

    p.add_argument(old, action=DeprecatedAlias, help=argparse.SUPPRESS, **kwargs)
