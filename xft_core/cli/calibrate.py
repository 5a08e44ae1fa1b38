"""`xft calibrate`: estimate each target language's label prior from its unlabelled text and store it in the
adapter packages, so that `xft eval`, `xft predict`, `xft serve` and the router correct it (no training)."""

from __future__ import annotations

import argparse
from typing import Any

from xft_core.hooks import CommandSpec, hookimpl


@hookimpl
def xft_commands():
    yield CommandSpec(name="calibrate", register=register,
                      description="per-language label-prior calibration from unlabelled text (no training)")


def register(subparsers: Any) -> None:
    from xft_core.evaluation.calibration import METHODS

    p = subparsers.add_parser(
        "calibrate", help="correct each language's label prior, estimated from its unlabelled text (no training)",
        description="Estimate, for every adapter package of the runs given and every language, the label prior the "
        "adapter has on that language's unlabelled text (batch, batch-log), or on content-free inputs (contextual), "
        "and store it in the package (calibration.json). Predictions of those languages are then corrected wherever "
        "the package answers: xft eval, xft predict, xft serve, the Router. Rows of the unlabelled text that repeat "
        "an evaluation row are dropped.",
    )
    p.add_argument("sources", nargs="+", metavar="RUN_OR_ADAPTER", help="run folders and/or adapter package folders")
    p.add_argument("--data", help="data folder or file with <lang>.unlabelled.jsonl|txt (default: the first run's data.path)")
    p.add_argument("--languages", help="comma-separated languages (default: every language with unlabelled text)")
    p.add_argument("--method", choices=list(METHODS), default="batch",
                   help="batch: mean prediction over the language's unlabelled texts (default); batch-log: their mean "
                        "log-probability per label, which a few confident texts sway less; contextual: mean prediction "
                        "over content-free inputs (N/A, empty, mask), which needs no text")
    p.add_argument("--split", help="the split holding the unlabelled text (default: unlabelled)")
    p.add_argument("--max-rows", type=int, default=500, metavar="N",
                   help="unlabelled rows per language to estimate from (default 500)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from xft_core.evaluation.calibration import calibrate
    from xft_core.util.console import console as make_console

    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()] if args.languages else None
    data = args.data or _run_data(args.sources)
    done = calibrate(args.sources, data, languages=languages, split=args.split, method=args.method, max_rows=args.max_rows,
                     batch_size=args.batch_size, progress=not args.no_progress)
    out = make_console()
    for package, calibration in done.packages.items():
        for language, entry in calibration.languages.items():
            prior = ", ".join(f"{label} {value:+.2f}" for label, value in zip(calibration.labels, entry["log_prior"]))
            out.print(f"{package} {language}: {entry['method']} from {entry['rows']} rows; log prior {prior}",
                      highlight=False, soft_wrap=True, markup=False)
    out.print(f"{done.forward_rows} rows through the model in {done.seconds:.1f} s", highlight=False)
    return 0


def _run_data(sources: list[str]) -> str | None:
    """The data path of the first run among `sources` (its config.yaml), for `--data` left out."""
    from pathlib import Path

    from xft_core.config import ConfigError, load_config
    from xft_core.util.runfiles import CONFIG

    for source in sources:
        for folder in (Path(source), Path(source).parent.parent):
            if (folder / CONFIG).is_file():
                try:
                    return load_config(folder / CONFIG).data.path or None
                except ConfigError:
                    continue
    return None
