"""Cross-lingual transfer matrix: every trained adapter (rows) on every evaluation language (columns).

The base model is loaded once; each adapter package is attached onto it, and every cell holds all of the
task head's metrics, computed by `xft_core.training.engine.score` from `head.predict`. Only the task-head protocol
is used, so the matrix works for every head. Reports (JSON, CSV, Markdown, heatmap PNG) and a terminal
table are written from the finished matrix; `xft eval` is the command line for all of it.

Derived numbers, per row and metric (the row's *training languages* come from its manifests):

- average: mean over every evaluated language;
- in-language: mean over the row's training languages;
- transfer: mean over the languages the row was not trained on (zero-shot transfer);
- transfer gap: in-language minus transfer (for an adapter trained on language s: score on s minus the
  mean on the others);
- vs zero-shot: the row's mean minus the *reference row's* mean, both over the languages the reference
  did not train on. The reference is the first row trained on exactly one language (else the base row),
  so for the per-language row this reads "what each language's own adapter gains over zero-shot
  transfer from the source language" (or over the untuned base).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from xft_core.adapters import MANIFEST, AdapterError, Manifest
from xft_core.evaluation.plots import print_table, training_curves, write_reports

__all__ = ["MatrixRow", "TransferMatrix", "Evaluation", "transfer_matrix", "evaluate", "write_reports",
           "training_curves", "print_table", "register"]

BASE_LABEL = "base (no adapter)"
PER_LANGUAGE_LABEL = "per-language"
DEFINITIONS = {
    "average": "mean over every evaluated language",
    "in_language": "mean over the row's training languages",
    "transfer": "mean over the languages the row was not trained on (zero-shot transfer)",
    "transfer_gap": "in-language minus transfer",
    "vs_zero_shot": "row mean minus the reference row's mean, over the languages the reference was not trained on "
                    "(reference: the first row trained on one language, else the base row)",
}


# ------------------------------------------------------------------------------------------------ matrix
@dataclass
class MatrixRow:
    label: str
    kind: Literal["base", "adapter", "per-language"]
    sources: list[str]  # training languages (empty for the base row)
    adapters: dict[str, str] = field(default_factory=dict)  # "adapter": {"*": folder}; per-language: {language: folder}
    run: str = ""
    cells: dict[str, dict[str, float]] = field(default_factory=dict)  # language -> metric -> value


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass
class TransferMatrix:
    languages: list[str]
    rows: list[MatrixRow]
    metric_names: list[str]  # the head's metrics; the first is primary
    split: str = "test"
    task: str = ""
    base_model: str = ""
    examples: dict[str, int] = field(default_factory=dict)  # evaluated rows per language
    greater_is_better: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return self.metric_names[0]

    def row(self, label: str) -> MatrixRow:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row '{label}'; rows: {', '.join(r.label for r in self.rows)}")

    def value(self, label: str, language: str, metric: str | None = None) -> float | None:
        return self.row(label).cells.get(language, {}).get(metric or self.primary)

    def values(self, metric: str | None = None) -> list[list[float | None]]:
        """rows x languages of one metric (None where a row has no value for a language)."""
        m = metric or self.primary
        return [[row.cells.get(lang, {}).get(m) for lang in self.languages] for row in self.rows]

    def reference(self) -> MatrixRow | None:
        """The zero-shot reference: the first adapter row trained on exactly one language, else the base row."""
        single = next((r for r in self.rows if r.kind == "adapter" and len(r.sources) == 1), None)
        return single or next((r for r in self.rows if r.kind == "base"), None)

    def summary(self, metric: str | None = None) -> dict[str, dict[str, float | None]]:
        """Per row label: average, in_language, transfer, transfer_gap, vs_zero_shot (see the module docstring)."""
        m = metric or self.primary
        reference = self.reference()
        unseen_by_reference = [l for l in self.languages if reference and l not in reference.sources]
        out = {}
        for row in self.rows:
            have = {l: row.cells[l][m] for l in self.languages if m in row.cells.get(l, {})}
            in_language = _mean([v for l, v in have.items() if l in row.sources])
            transfer = _mean([v for l, v in have.items() if l not in row.sources])
            vs = None
            if reference is not None and row is not reference:
                shared = [l for l in unseen_by_reference if l in have and m in reference.cells.get(l, {})]
                if shared:
                    vs = _diff(_mean([have[l] for l in shared]), _mean([reference.cells[l][m] for l in shared]))
            out[row.label] = {"average": _mean(list(have.values())), "in_language": in_language, "transfer": transfer,
                              "transfer_gap": _diff(in_language, transfer), "vs_zero_shot": vs}
        return out

    def to_dict(self) -> dict[str, Any]:
        reference = self.reference()
        return {
            "task": self.task, "base_model": self.base_model, "split": self.split, "languages": self.languages,
            "metrics": self.metric_names, "primary": self.primary, "examples": self.examples,
            "greater_is_better": self.greater_is_better, "reference_row": reference.label if reference else None,
            "rows": [_clean(asdict(r)) for r in self.rows],
            "summary": {m: _clean(self.summary(m)) for m in self.metric_names},
            "definitions": DEFINITIONS, "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TransferMatrix":
        rows = [MatrixRow(**{k: r[k] for k in ("label", "kind", "sources", "adapters", "run", "cells")}) for r in data["rows"]]
        for row in rows:  # JSON has no NaN: a metric that could not be computed comes back as None
            row.cells = {l: {m: (float("nan") if v is None else v) for m, v in c.items()} for l, c in row.cells.items()}
        return cls(list(data["languages"]), rows, list(data["metrics"]), data.get("split", ""), data.get("task", ""),
                   data.get("base_model", ""), dict(data.get("examples", {})), dict(data.get("greater_is_better", {})),
                   list(data.get("notes", [])))


def _clean(value: Any) -> Any:
    """NaN -> None, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------- sources
def _packages_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()) if folder.is_dir() else []


def _run_root(package: Path) -> Path | None:
    """The run folder a package lives in (runs/<name>/adapters/<adapter>), if it is one."""
    root = package.parent.parent
    return root if package.parent.name == "adapters" and (root / "config.yaml").is_file() else None


def _language_label(languages: Sequence[str], adapter_name: str) -> str:
    if len(languages) == 1:
        return f"{languages[0]} (zero-shot)"
    shown = "+".join(languages) if len(languages) <= 4 else f"{len(languages)} languages"
    return f"{adapter_name} ({shown})"


def plan_rows(sources: Sequence[str | Path], *, each_adapter: bool = False) -> tuple[list[MatrixRow], list[Path]]:
    """Rows (without cells) for run folders and adapter packages, and the run folders among the sources.

    A run folder gives one row per adapter package; a per-language run (config `adapters: per_language`,
    or several one-language packages of one run) gives one combined "per-language" row in which each
    language is served by its own adapter, plus each adapter's own row when `each_adapter` is set."""
    rows: list[MatrixRow] = []
    runs: list[Path] = []
    for source in sources:
        path = Path(source)
        if (path / MANIFEST).is_file():
            packages, root, single = [path], _run_root(path), True
        elif (path / "adapters").is_dir():
            packages, root, single = _packages_in(path / "adapters"), path, False
        else:
            packages, root, single = _packages_in(path), _run_root(path / "x"), False
        if not packages:
            raise AdapterError(f"{path}: neither an xft run folder (with adapters/<name>/{MANIFEST}) nor an adapter package ({MANIFEST})")
        if root is not None and root not in runs:
            runs.append(root)
        manifests = {p: Manifest.read(p) for p in packages}
        run_name = next(iter(manifests.values())).data.get("run") or (root.name if root else "")
        per_language = not single and _is_per_language(root, list(manifests.values()))
        if per_language:
            adapters = {m.languages[0]: str(p) for p, m in manifests.items()}
            rows.append(MatrixRow(PER_LANGUAGE_LABEL, "per-language", sorted(adapters), adapters, run_name))
        if not per_language or each_adapter:
            for p, m in manifests.items():
                name = m.data.get("adapter_name", p.name)
                rows.append(MatrixRow(_language_label(m.languages, name), "adapter", m.languages, {"*": str(p)}, m.data.get("run", run_name)))
    _unique_labels(rows)
    return rows, runs


def _is_per_language(root: Path | None, manifests: list[Manifest]) -> bool:
    if root is not None:
        from xft_core.config import ConfigError, load_config

        try:
            return load_config(root / "config.yaml").adapters == "per_language"
        except ConfigError:
            pass
    languages = [m.languages for m in manifests]
    return len(languages) > 1 and all(len(l) == 1 for l in languages) and len({l[0] for l in languages}) == len(languages)


def _unique_labels(rows: list[MatrixRow]) -> None:
    """When two rows share a label, every row gets its run's name in front (then a number if still equal)."""
    labels = [r.label for r in rows]
    if len(set(labels)) < len(labels):
        for row in rows:
            if row.run and row.label.split(" (")[0] != row.run:
                row.label = f"{row.run}: {row.label}"
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.label] = seen.get(row.label, 0) + 1
        if seen[row.label] > 1:
            row.label = f"{row.label} #{seen[row.label]}"


# -------------------------------------------------------------------------------------------------- data
def _eval_data(data: Any, runs: list[Path], split: str | None, languages: Sequence[str] | None, head: Any,
               max_examples: int) -> tuple[dict[str, Any], str]:
    """(language -> Split, split name) for the evaluation columns, validated by the head."""
    from xft_core.config import RunConfig, load_config
    from xft_core.data import DataError, DataSet, discover, select, validate

    if data is None:
        if not runs:
            raise DataError("No evaluation data: give the data folder (--data PATH) or a run folder whose config.yaml names it")
        data = load_config(runs[0] / "config.yaml")
    if isinstance(data, RunConfig):
        split = split or data.data.test_split
        d = data.data
        where = d.path or ("data.files" if d.files else "data.rows")
        data = discover(d.path, d.files, d.language_field, getattr(d, "rows", None))
    elif not isinstance(data, DataSet):
        where = str(data)
        data = discover(data)
    else:
        where = "data set"
    split = split or "test"
    if not data.languages(split):
        present = ", ".join(sorted(data.splits)) or "none"
        raise DataError(f"No '{split}' split in {where} (splits present: {present}). Choose one with --split (Python: split=...).")
    parts = select(data, split, list(languages or data.languages(split)), max_examples)
    validate(DataSet({split: parts}), head, [split])
    return parts, split


# ------------------------------------------------------------------------------------------- evaluation
def transfer_matrix(
    sources: str | Path | Sequence[str | Path],
    data: Any = None,
    *,
    languages: Sequence[str] | None = None,
    split: str | None = None,
    pm: Any = None,
    include_base: bool | Literal["auto"] = "auto",
    each_adapter: bool = False,
    max_examples: int = 0,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    progress: bool = True,
    console: Any = None,
) -> TransferMatrix:
    """Evaluate every adapter of `sources` (run folders and/or adapter packages) on every language.

    `data` is a data folder or file, a `RunConfig`, a `DataSet`, or None for the first run's config;
    `split` defaults to the config's test split ("test"); `languages` to every language of that split.
    The zero-shot base row (the base model without any adapter) is added where it means something:
    `include_base="auto"` adds it only when the task head puts no untrained weights on the base (a
    generation head does; a classification head's new classifier would score at chance, so it is
    skipped and a note says so). `True` forces it, `False` never adds it. Packages of strategies that
    cannot stack on a shared base (`full`) replace the base weights, which are restored afterwards.

    Example::

        matrix = transfer_matrix(["runs/en-only", "runs/per-lang"], "data/", split="test")
        matrix.value("en (zero-shot)", "de")      # primary metric of the English adapter on German
        matrix.summary()["per-language"]["vs_zero_shot"]
    """
    from xft_core.adapters import attach, head_from_manifest, load_base, strategy_from_manifest
    from xft_core.training.engine import score, with_language
    from xft_core.hooks.manager import collect, get_plugin_manager

    pm = pm or get_plugin_manager()
    rows, runs = plan_rows([sources] if isinstance(sources, (str, Path)) else list(sources), each_adapter=each_adapter)
    packages = list(dict.fromkeys(Path(p) for row in rows for p in row.adapters.values()))
    first = Manifest.read(packages[0])
    parts, split = _eval_data(data, runs, split, languages, head_from_manifest(first, pm), max_examples)
    columns = list(parts)
    if max_length is None:
        max_length = _config_value(runs, lambda c: c.training.max_length, 128)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    # the runs' own precision by default, so the matrix agrees with the dev scores logged in training
    from xft_core.training.engine import precision_for

    precision = precision_for(precision or _config_value(runs, lambda c: c.training.precision, "no"), cpu=device in (None, "cpu"))
    autocast = _autocast(precision, device)
    base = load_base(packages[0], pm, device=device)
    head = base.head
    metric_specs = collect(pm, "metrics")
    matrix = TransferMatrix(columns, [], list(head.metric_names), split, first.data.get("task", ""), first.data.get("base_model", ""),
                            {l: len(p) for l, p in parts.items()},
                            {m: metric_specs[m].spec.greater_is_better for m in head.metric_names if m in metric_specs})
    untrained = head.head_modules(base.model)
    if include_base == "auto":
        include_base = not untrained
        if untrained:
            matrix.notes.append(f"No '{BASE_LABEL}' row: the {matrix.task} head adds untrained weights ({', '.join(untrained)}), so the "
                                "plain base would score at chance. Ask for it with include_base=True (xft eval --base).")
    if include_base:
        rows.insert(0, MatrixRow(BASE_LABEL, "base", []))

    # which package must be run on which language: one-language work only for per-language rows
    needed: dict[Path, list[str]] = {p: [] for p in packages}
    for row in rows:
        for language, folder in row.adapters.items():
            wanted = columns if language == "*" else [language] if language in columns else []
            needed[Path(folder)] += [l for l in wanted if l not in needed[Path(folder)]]
    stackable = {p: strategy_from_manifest(Manifest.read(p), pm)[0].stackable for p in packages}
    order = sorted(packages, key=lambda p: stackable[p])  # replacing strategies first, while the base is pristine
    results: dict[Path | None, dict[str, dict[str, float]]] = {}

    def run_columns(model: Any, key: Path | None, wanted: list[str], label: str, bar: Any, task: Any) -> None:
        for language in wanted:
            bar.update(task, description=f"{label} on {language}")
            rows_ = parts[language].rows
            with autocast():
                predictions = head.predict(model, base.tokenizer, with_language(rows_, language), batch_size=batch_size, max_length=max_length)
            results.setdefault(key, {})[language] = score(head, pm, predictions, rows_)
            bar.advance(task)

    total = sum(map(len, needed.values())) + (len(columns) if include_base else 0)
    with _progress(console, progress) as bar:
        task = bar.add_task("transfer matrix", total=total)
        model = base.model
        if include_base:
            run_columns(model, None, columns, "base", bar, task)
        pristine = None
        for index, package in enumerate(order):
            if not needed[package]:
                continue
            if not stackable[package] and pristine is None:
                pristine = {k: v.detach().to("cpu", copy=True) for k, v in base.model.state_dict().items()}
            name = f"xft{index}"
            model = attach(base, model, package, name)
            _, strategy = strategy_from_manifest(Manifest.read(package), pm)
            strategy.activate(model, name)
            run_columns(model, package, needed[package], package.name, bar, task)
            if not stackable[package]:
                base.model.load_state_dict(pristine)
    for row in rows:
        if row.kind == "base":
            row.cells = results[None]
        elif row.kind == "adapter":
            row.cells = dict(results[Path(row.adapters["*"])])
        else:
            row.cells = {l: results[Path(row.adapters[l])][l] for l in columns if l in row.adapters}
    matrix.rows = rows
    return matrix


def _autocast(precision: str, device: str | None) -> Any:
    """A context that runs forwards in bf16/fp16 autocast, or a no-op for full precision."""
    import contextlib

    import torch

    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    device_type = "cuda" if device and str(device).startswith("cuda") else "cpu"
    return lambda: torch.autocast(device_type, dtype=dtype)


def _config_value(runs: list[Path], get: Any, default: Any) -> Any:
    from xft_core.config import ConfigError, load_config

    for root in runs:
        try:
            return get(load_config(root / "config.yaml"))
        except ConfigError:
            continue
    return default


def _progress(console: Any, enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console or Console(stderr=True), disable=not enabled, transient=True)


# -------------------------------------------------------------------------------------------------- API
@dataclass
class Evaluation:
    matrix: TransferMatrix
    paths: dict[str, Path]  # json, csv, md, png, and curves (one per run source) when written


def default_report_folder(sources: Sequence[str | Path]) -> Path:
    """`<first run>/report`; for packages outside any run, ./xft-report."""
    for source in sources:
        path = Path(source)
        root = path if (path / "adapters").is_dir() else _run_root(path) or _run_root(path / "x")
        if root is not None:
            return root / "report"
    return Path("xft-report")


def evaluate(sources: str | Path | Sequence[str | Path], data: Any = None, *, out: str | Path | None = None,
             metric: str | None = None, curves: bool = True, **options: Any) -> Evaluation:
    """Transfer matrix plus every report; `options` go to `transfer_matrix`. Also draws each run's training
    curves (`training_curves.png`) beside the reports.

    Example::

        result = evaluate("runs/per-lang", split="test")
        print(result.paths["md"], result.matrix.summary()["per-language"])
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if metric:  # checked before the (long) evaluation
        from xft_core.adapters import head_from_manifest
        from xft_core.config import ConfigError
        from xft_core.hooks.manager import get_plugin_manager

        rows, _ = plan_rows(sources)
        manifest = Manifest.read(Path(next(iter(rows[0].adapters.values()))))
        names = list(head_from_manifest(manifest, options.get("pm") or get_plugin_manager()).metric_names)
        if metric not in names:
            raise ConfigError(f"Metric '{metric}' (--metric) is not one of the {manifest.data.get('task')} head's metrics: {', '.join(names)}")
    matrix = transfer_matrix(sources, data, **options)
    folder = Path(out) if out else default_report_folder(sources)
    paths = write_reports(matrix, folder, metric=metric)
    if curves:
        _, runs = plan_rows(sources)
        for root in runs:
            if (root / "metrics.jsonl").is_file():
                name = "training_curves.png" if len(runs) == 1 else f"training_curves-{root.name}.png"
                paths[f"curves:{root.name}"] = training_curves(root, folder / name, metric=metric)
    return Evaluation(matrix, paths)


# -------------------------------------------------------------------------------------------------- CLI
def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    languages = [l.strip() for l in args.languages.split(",") if l.strip()] if args.languages else None
    result = evaluate(args.sources, args.data, out=args.out, metric=args.metric, languages=languages, split=args.split,
                      include_base=args.base, each_adapter=args.each_adapter, max_examples=args.max_examples,
                      batch_size=args.batch_size, max_length=args.max_length, device=args.device, precision=args.precision,
                      progress=not args.no_progress)
    console = Console()
    print_table(result.matrix, console, metric=args.metric)
    for kind, path in result.paths.items():
        console.print(f"{kind}: {path}", highlight=False)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="transfer matrix: every adapter on every language, with reports",
        description="Evaluate adapters (rows) on every language (columns) and write report/transfer.{json,csv,md,png}.",
    )
    p.add_argument("sources", nargs="+", metavar="RUN_OR_ADAPTER", help="run folders (runs/<name>) and/or adapter package folders")
    p.add_argument("--data", help="data folder or file (default: the first run's config data.path)")
    p.add_argument("--languages", help="comma-separated evaluation languages (default: every language with the split)")
    p.add_argument("--split", help="data split to evaluate (default: the config's data.test_split, 'test')")
    p.add_argument("--metric", help="metric of the heatmap, Markdown order and terminal table (default: the head's primary)")
    p.add_argument("--out", help="report folder (default: <first run>/report)")
    p.add_argument("--max-examples", type=int, default=0, metavar="N", help="at most N examples per language (0: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="tokens per example (default: the run's training.max_length)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"],
                   help="autocast for the forwards (default: the run's training.precision; auto = bf16 where supported)")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--no-base", dest="base", action="store_const", const=False, help="no zero-shot base row")
    base.add_argument("--base", dest="base", action="store_const", const=True,
                      help="add the base row even for heads with untrained weights (classification)")
    p.add_argument("--each-adapter", action="store_true", help="per-language runs: one row per adapter besides the combined row")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval, base="auto")
