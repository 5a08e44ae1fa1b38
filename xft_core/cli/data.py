"""`xft data check`: the data checks of `xft_core.data.checks` as a report on the terminal and a JSON file.

Findings are warnings: the command exits 0 when it ran, 2 when the data cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from xft_core.data.checks import KINDS, MIN_LANGID_CHARS, Report
from xft_core.hooks import CommandSpec, hookimpl
from xft_core.util.console import print_line

SHORT = {  # column headers for the per-language issue table
    "empty": "empty",
    "duplicate": "dup",
    "duplicate_across_splits": "dup across splits",
    "conflicting_labels": "label conflict",
    "near_duplicate": "near dup",
    "near_duplicate_across_splits": "near dup across splits",
    "cross_language_duplicate": "in another language",
    "wrong_language": "wrong language",
    "ambiguous_language": "close call",
    "over_length": "over max_length",
}


PRINT_JSON = "-"  # `--json` alone: the report on stdout


@hookimpl
def xft_commands():
    yield CommandSpec(name="data", register=register, description="inspect data sets (xft data check)")


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="inspect data sets (xft data check)", description="Inspect data sets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    data.set_defaults(func=lambda args: data.print_help() or 0)
    p = data_sub.add_parser(
        "check",
        help="counts, label balance, duplicates, near duplicates, wrong-language and over-long rows",
        description="Check a data set before training: rows and labels per language and split; exact and near "
        "duplicates within a split and across the splits of one language; rows whose language is not the file's; "
        "empty rows; with --model, rows longer than --max-length tokens. Findings are warnings (exit 0); "
        "every one is in the JSON file with its file and line.",
    )
    p.add_argument("data", metavar="DATA", help="a data folder or file (the layouts `data.path` accepts), or a run config (YAML)")
    p.add_argument("--task", metavar="NAME",
                   help="the task head whose fields to check (default: a config's task, else the first installed head, "
                        "in name order, that accepts the rows; `xft plugins` lists them)")
    p.add_argument("--split", action="extend", nargs="+", metavar="S",
                   help="only these splits, comma-separated or repeated: --split train,dev (default: all)")
    p.add_argument("--languages", metavar="A,B", help="only these languages, comma-separated ('en' also finds 'eng')")
    p.add_argument("--model", metavar="REF", help="count tokens with this model's tokenizer (any reference `xft train` accepts)")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="token limit for --model (default: the config's training.max_length, else 128)")
    p.add_argument("--near-threshold", type=float, default=0.9, metavar="T",
                   help="similarity of normalised texts (0-1) from which rows are near duplicates (default 0.9); 0: off")
    p.add_argument("--no-langid", action="store_true", help="skip language identification")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write every finding as JSON (default: ./data_check.json)")
    p.add_argument("--json", nargs="?", const=PRINT_JSON, default=None, metavar="",
                   help="print the report as JSON on stdout instead of the tables (it is written to --out too); "
                        "`--json FILE`, the old spelling of --out FILE, still works")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="examples shown per kind of finding (default 5)")
    p.set_defaults(func=cmd_data_check)


def load(source: str, task: str | None, pm: Any) -> tuple[Any, str | None, Any, list[str], int | None]:
    """(DataSet, task name or None, task head or None, the config's languages, the config's max_length) for a data
    path or a run config. Without a config or --task, the head is chosen once the data is narrowed down."""
    from xft_core.data.checks import task_head
    from xft_core.data.loading import dataset_from_path

    path = Path(source)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return dataset_from_path(source, pm), task, task_head(pm, task, config_key="--task") if task else None, [], None
    from xft_core.config import load_config
    from xft_core.data.loading import dataset_from_config

    config = load_config(path)
    name = task or config.task
    head = task_head(pm, name, config.task_options if name == config.task else {}, config_key="--task" if task else "task")
    languages = list(dict.fromkeys([*config.data.train_languages, *config.data.eval_languages]))
    return dataset_from_config(config.data, pm), name, head, languages, config.training.max_length


def cmd_data_check(args: argparse.Namespace) -> int:
    import time

    from xft_core.data import DataError
    from xft_core.data.checks import check, head_for_rows, language_detector, subset
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.util.console import console as make_console
    from xft_core.util.files import atomic_write_json

    console, status = make_console(), make_console(stderr=True)
    started = time.perf_counter()
    pm = get_plugin_manager()
    data, task, head, config_languages, config_max_length = load(args.data, args.task, pm)
    languages = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else config_languages
    data = subset(data, split_names(args.split), languages)
    if not data.splits:
        raise DataError(f"{args.data}: no rows to check")
    if not 0 <= args.near_threshold <= 1:
        raise DataError(f"--near-threshold must be between 0 and 1, got {args.near_threshold}")
    if head is None:
        task, head = head_for_rows(pm, data)
    tokenizer, max_length = None, args.max_length or config_max_length or 128
    if args.model:
        from xft_core.models import load_tokenizer, quiet_transformers, resolve_model

        quiet_transformers()
        with status.status(f"loading the tokenizer of {args.model}"):
            tokenizer = load_tokenizer(resolve_model(args.model, pm))
    elif args.max_length:
        print_line(status, "--max-length needs --model (the tokenizer that counts tokens); token lengths not checked")
    detector = None if args.no_langid else language_detector(pm)
    if not args.no_langid and detector is None:
        print_line(status, "language ID skipped: no installed plugin answers xft_language_scores or xft_detect_language "
                           "(the built-in xft_langid needs py3langid: pip install py3langid)")
    with status.status("checking") as spinner:
        report = check(
            data,
            fields=head.fields,
            tokenizer=tokenizer,
            max_length=max_length,
            near_threshold=args.near_threshold or None,
            detector=detector,
            progress=lambda step: spinner.update(f"checking: {step}"),
        )
    report.seconds["total"] = time.perf_counter() - started
    out = Path(args.out or (args.json if args.json not in (None, PRINT_JSON) else "data_check.json"))
    if args.json not in (None, PRINT_JSON):
        import warnings

        from xft_core.config.load import ConfigWarning

        warnings.warn(ConfigWarning("--json FILE is deprecated; use --out FILE (--json alone prints the report)"),
                      stacklevel=2)
    record = {"data": str(Path(args.data).resolve()), "task": task, **report.to_dict()}
    atomic_write_json(out, record)
    if args.json == PRINT_JSON:
        import json

        sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        return 0
    render(report, console, source=args.data, examples=args.examples, task=task)
    print_line(console, f"every finding: {out.resolve()}")
    return 0


def split_names(given: list[str] | None) -> list[str] | None:
    """--split values: comma-separated, repeated, or several after one --split (the older form)."""
    if not given:
        return None
    return [name.strip() for value in given for name in value.split(",") if name.strip()]


# ---------------------------------------------------------------------------------------------- render
def _pct(n: int, total: int) -> str:
    return f"{n:,} ({100 * n / total:.1f}%)" if total and n else (f"{n:,}" if n else "-")


def _name(file: str) -> str:
    return Path(file).name


def render(report: Report, console: Any, *, source: str = "", examples: int = 5, task: str | None = None) -> None:
    """Tables may use the terminal's width; every line that names a file and line is printed whole."""
    _summary(report, console, source, task)
    label_kind = "labels" if report.fields.label else "tags" if report.fields.tags else None
    union = sorted({name for p in report.parts for name in getattr(p, label_kind)}) if label_kind else []
    console.print(_rows_table(report, label_kind, union))
    if label_kind == "labels" and 1 < len(union) <= 50:
        console.print(_labels_table(report, union))
    kinds = [k for k in KINDS if report.count(k)]
    if kinds:
        console.print(_issues_table(report, kinds))
        console.print(_issues_per_language_table(report, kinds))
    for kind in kinds:
        _examples(report, kind, console, examples)
    _coverage(report, console)


def _splits(report: Report) -> list[str]:
    return list(dict.fromkeys(p.split for p in report.parts))


def _languages(report: Report) -> list[str]:
    return sorted({p.language for p in report.parts})


def _table(title: str, columns: list[str], *, right: tuple[str, ...] = ()) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _summary(report: Report, console: Any, source: str, task: str | None) -> None:
    """One line on what was checked; one more for parallel data."""
    rows = sum(p.rows for p in report.parts)
    second = report.fields.pair or report.fields.target
    print_line(
        console,
        f"xft data check {source}: {len(_languages(report))} language(s), splits {', '.join(_splits(report))}, "
        f"{rows:,} rows; " + (f"task head '{task}': " if task else "") + f"text field '{report.fields.text}'"
        + (f" + '{second}'" if second else ""),
    )
    if report.parallel:
        print_line(console, "parallel data (same rows and labels line by line in every language): "
                            "rows repeated across languages are expected, not flagged")


def _rows_table(report: Report, label_kind: str | None, union: list[str]) -> Any:
    """Rows per language and split; with labels (or tags): how many, the worst imbalance, which are missing."""
    splits = _splits(report)
    by = {(p.language, p.split): p for p in report.parts}
    columns = ["language", *splits]
    if label_kind:
        columns += [label_kind, "most:least", f"missing {label_kind}"]
    table = _table("Rows per language and split" + (f", {label_kind}" if label_kind else ""), columns,
                   right=(*splits, label_kind or "", "most:least"))
    for language in _languages(report):
        parts = [by.get((language, s)) for s in splits]
        cells = [f"{p.rows:,}" if p else "-" for p in parts]
        if label_kind:
            present = [p for p in parts if p]
            names = {name for p in present for name in getattr(p, label_kind)}
            worst = max(((p.imbalance or 0, p.split) for p in present), default=(0, ""))
            missing = [f"{p.split}: {', '.join(sorted(set(union) - set(getattr(p, label_kind))))}"
                       for p in present if set(union) - set(getattr(p, label_kind))]
            cells += [str(len(names)), f"{worst[0]:.1f} ({worst[1]})" if worst[0] else "-", _clip("; ".join(missing), 60) or "-"]
        table.add_row(language, *cells)
    return table


def _labels_table(report: Report, union: list[str]) -> Any:
    """Each label's share of every split, all languages together."""
    splits = _splits(report)
    totals: dict[str, Counter[str]] = {s: Counter() for s in splits}
    for p in report.parts:
        totals[p.split].update(p.labels)
    table = _table("Labels, all languages", ["label", *splits], right=tuple(splits))
    for label in union:
        table.add_row(label, *[_pct(totals[s][label], sum(totals[s].values())) for s in splits])
    return table


def _issues_table(report: Report, kinds: list[str]) -> Any:
    """Each kind of finding: how many rows, their rate, the first one's file and line."""
    rows = sum(p.rows for p in report.parts)
    table = _table("Issues", ["finding", "rows", "rate", "first"], right=("rows", "rate"))
    for kind in kinds:
        n, first = report.count(kind), report.of(kind)[0]
        table.add_row(KINDS[kind], f"{n:,}", f"{100 * n / rows:.2f}%", f"{_name(first.file)}:{first.line}")
    return table


def _issues_per_language_table(report: Report, kinds: list[str]) -> Any:
    """Findings per language, for the languages with any; language-ID findings as a share of the rows checked."""
    table = _table("Issues per language (languages with any)", ["language", "rows"], right=("rows",))
    for kind in kinds:
        table.add_column(SHORT[kind], justify="right")
    for language in _languages(report):
        counts = [report.count(k, language) for k in kinds]
        if any(counts):
            total = sum(p.rows for p in report.parts if p.language == language)
            checked = sum(p.langid_checked for p in report.parts if p.language == language)
            cells = [_pct(n, checked) if k in ("wrong_language", "ambiguous_language") else f"{n:,}" if n else "-"
                     for k, n in zip(kinds, counts)]
            table.add_row(language, f"{total:,}", *cells)
    return table


def _coverage(report: Report, console: Any) -> None:
    """What language ID could judge, and how long each check took."""
    if report.detector:
        unknown = sorted({p.language for p in report.parts if p.langid == "not checkable"})
        short = sum(p.langid_not_judged for p in report.parts)
        checked = sum(p.langid_checked for p in report.parts)
        note = f"language ID ({report.detector}): {checked:,} rows checked"
        if short:
            note += f", {short:,} not judged (shorter than {MIN_LANGID_CHARS} characters or no answer)"
        if unknown:
            note += f"; not checkable (unknown to the detector): {', '.join(unknown)}"
        print_line(console, note)
    if report.seconds:
        rows = sum(p.rows for p in report.parts)
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items() if k != "total")
        print_line(console, f"checked {rows:,} rows in "
                            f"{report.seconds.get('total', sum(report.seconds.values())):.1f} s ({steps})")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _examples(report: Report, kind: str, console: Any, n: int) -> None:
    """The first `n` findings of one kind, one whole line each (file:line, what it repeats or what was found, text)."""
    found = report.of(kind)
    if not n or not found:
        return
    print_line(console, f"{KINDS[kind]}: first {min(n, len(found))} of {len(found):,}")
    for f in found[:n]:
        if f.other:
            detail = f"of {_name(f.other['file'])}:{f.other['line']}"
            if "similarity" in f.detail:
                detail += f" ({f.detail['similarity']:.2f})"
            if "label" in f.detail:
                detail += f" ({f.detail['other_label']} vs {f.detail['label']})"
        elif "detected" in f.detail:
            detail = f"detected {f.detail['detected']}"
            if f.detail.get("probability") is not None:
                detail += f" {f.detail['probability']:.2f}, own {f.detail['expected_probability']:.2f}"
        elif "tokens" in f.detail:
            detail = f"{f.detail['tokens']} tokens"
        else:
            detail = "empty: " + ", ".join(f.detail.get("fields", []))
        print_line(console, f"  {_name(f.file)}:{f.line}  {detail}  {_clip(f.text, 90)!r}")
