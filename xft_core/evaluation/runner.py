"""Evaluating a transfer matrix: the base loads once, each package is attached, run on its languages and
detached again through its own strategy; then the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from xft_core.adapters import Manifest, trained_precision
from xft_core.config.load import check_max_length
from xft_core.evaluation.calibration import Calibration
from xft_core.evaluation.matrix import BASE_LABEL, MatrixRow, TransferMatrix
from xft_core.evaluation.plan import eval_data, plan_rows, run_root
from xft_core.evaluation.plots import training_curves
from xft_core.evaluation.predict import predict_rows, score, with_language
from xft_core.evaluation.reports import write_reports
from xft_core.util.console import progress as progress_bar
from xft_core.util.precision import adapter_scales, resolve_precision, scale_for
from xft_core.util.runfiles import CONFIG, METRICS


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
    scale: float | Mapping[str, float] | None = None,
    calibrated: bool = True,
) -> TransferMatrix:
    """Evaluate every adapter of `sources` (run folders and/or adapter packages) on every language.

    `data` is a data folder or file, a `RunConfig`, a `DataSet`, or None for the first run's config;
    `split` defaults to the config's test split ("test"); `languages` to every language of that split.
    The zero-shot base row (the base model without any adapter) is added where it means something:
    `include_base="auto"` adds it only when the task head puts no untrained weights on the base (a
    generation head does; a classification head's new classifier would score at chance, so it is
    skipped and a note says so). `True` forces it, `False` never adds it. Each package is attached by its own
    strategy, evaluated and detached again, so the base is the same for every row. `scale` interpolates every
    adapter toward the base (WiSE-FT: 0 is the base, 1 the adapter as trained), one factor or one per language
    (`{"de": 0.5, "*": 1.0}`). A package holding a calibration (`xft calibrate`) has its label prior corrected
    on the languages it was estimated for, as the router does; `calibrated=False` scores it raw.

    Example::

        matrix = transfer_matrix(["runs/en-only", "runs/per-lang"], "data/", split="test")
        matrix.value("en (zero-shot)", "de")      # primary metric of the English adapter on German
        matrix.summary()["per-language"]["vs_zero_shot"]
    """
    from xft_core.adapters import head_from_manifest, load_base
    from xft_core.hooks.manager import get_plugin_manager

    pm = pm or get_plugin_manager()
    scales = adapter_scales(scale)
    rows, runs = plan_rows([sources] if isinstance(sources, (str, Path)) else list(sources), each_adapter=each_adapter)
    packages = list(dict.fromkeys(Path(p) for row in rows for p in row.adapters.values()))
    first = Manifest.read(packages[0])
    parts, split = eval_data(data, runs, split, languages, head_from_manifest(first, pm), max_examples)
    if max_length is None:
        max_length = _config_value(runs, lambda c: c.training.max_length, 128)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    # the runs' own precision by default, so the matrix agrees with the dev scores logged in training, and with
    # what `xft predict` and `xft serve` answer (trained_precision is their default too)
    precision = resolve_precision(precision or trained_precision(Path(packages[0]))[0], device or "cpu")
    base = load_base(packages[0], pm, device=device)
    check_max_length(max_length, base.model.config, key="--max-length (Python: max_length)")
    matrix = _empty_matrix(first, base.head, parts, split, pm)
    if include_base == "auto":
        include_base = _base_row_meaningful(matrix, base)
    if include_base:
        rows.insert(0, MatrixRow(BASE_LABEL, "base", []))
    _note_rows(matrix, rows, scales)
    cells = _Cells(base, parts, pm, scales, batch_size=batch_size, max_length=max_length, precision=precision,
                   calibrated=calibrated)
    results = cells.evaluate(packages, _languages_needed(rows, packages, list(parts)), include_base,
                             progress=progress, console=console)
    if cells.applied:
        matrix.notes.append("Calibrated without labels (the package's per-language label prior, `xft calibrate`): "
                            + "; ".join(f"{name} on {', '.join(langs)}" for name, langs in cells.applied.items()))
    for row in rows:
        if row.kind == "base":
            row.cells = results[None]
        elif row.kind == "adapter":
            row.cells = dict(results[Path(row.adapters["*"])])
        else:
            row.cells = {lang: results[Path(row.adapters[lang])][lang] for lang in matrix.languages if lang in row.adapters}
    matrix.rows = rows
    return matrix


def _empty_matrix(first: Manifest, head: Any, parts: dict[str, Any], split: str, pm: Any) -> TransferMatrix:
    """The matrix's columns, metrics and their direction, task and base model; rows come later."""
    from xft_core.hooks.manager import collect

    metric_specs = collect(pm, "metrics")
    return TransferMatrix(list(parts), [], list(head.metric_names), split, first.data.get("task", ""),
                          first.data.get("base_model", ""),
                          {lang: len(p) for lang, p in parts.items()},
                          {m: metric_specs[m].spec.greater_is_better for m in head.metric_names if m in metric_specs})


def _base_row_meaningful(matrix: TransferMatrix, base: Any) -> bool:
    """include_base="auto": the base row only when the head puts no untrained weights on the base (a note says
    why it is left out otherwise)."""
    untrained = base.head.head_modules(base.model)
    if untrained:
        matrix.notes.append(f"No '{BASE_LABEL}' row: the {matrix.task} head adds untrained weights "
                            f"({', '.join(untrained)}), so the "
                            "plain base would score at chance. Ask for it with include_base=True (xft eval --base).")
    return not untrained


def _note_rows(matrix: TransferMatrix, rows: list[MatrixRow], scales: Mapping[str, float]) -> None:
    """Notes for what a row's label cannot say: few-shot target rows, WiSE-FT scales."""
    for row in rows:
        if row.few_shot:
            shots = sorted(set(row.few_shot.values()))
            matrix.notes.append(f"'{row.label}' trained on {', '.join(map(str, shots))} labelled rows of each of "
                                f"{', '.join(sorted(row.few_shot))} besides its source languages (few-shot, marked †).")
    if scales:
        matrix.notes.append("Adapters interpolated toward the base (WiSE-FT), scale per language: "
                            + ", ".join(f"{k} {v:g}" for k, v in scales.items()))


def _languages_needed(rows: list[MatrixRow], packages: list[Path], columns: list[str]) -> dict[Path, list[str]]:
    """Which package must be run on which language: a per-language row needs each package on its language only."""
    needed: dict[Path, list[str]] = {p: [] for p in packages}
    for row in rows:
        for language, folder in row.adapters.items():
            wanted = columns if language == "*" else [language] if language in columns else []
            needed[Path(folder)] += [lang for lang in wanted if lang not in needed[Path(folder)]]
    return needed


@dataclass
class _Cells:
    """Computes the matrix's cells on one base: the base alone, then each package attached, run on the languages
    it is needed for, and detached again."""

    base: Any
    parts: dict[str, Any]
    pm: Any
    scales: Mapping[str, float]
    batch_size: int
    max_length: int
    precision: Any
    calibrated: bool = True
    applied: dict[str, list[str]] = field(default_factory=dict)  # package name -> languages calibrated

    def evaluate(self, packages: list[Path], needed: dict[Path, list[str]], include_base: bool, *,
                 progress: bool, console: Any) -> dict[Path | None, dict[str, dict[str, float]]]:
        """{package (None: the base) -> {language -> metrics}}."""
        from xft_core.adapters import check_compatible, strategy_from_manifest

        results: dict[Path | None, dict[str, dict[str, float]]] = {}
        columns = list(self.parts)
        total = sum(map(len, needed.values())) + (len(columns) if include_base else 0)
        with progress_bar(console, enabled=progress, transient=True) as bar:
            task = bar.add_task("transfer matrix", total=total)
            if include_base:
                results[None] = self._columns(self.base.model, columns, "base", bar, task)
            for package in packages:  # one at a time on the one base: attach, run its languages, detach
                if not needed[package]:
                    continue
                _, strategy = strategy_from_manifest(check_compatible(self.base, package), self.pm)
                model = strategy.attach(self.base.model, package, "xft-eval", self.base.head)
                calibration = Calibration.read(package) if self.calibrated else None
                try:
                    results[package] = self._columns(model, needed[package], package.name, bar, task, strategy, calibration)
                finally:
                    self.base.model = strategy.detach(model, "xft-eval")
        return results

    def _columns(self, model: Any, wanted: list[str], label: str, bar: Any, task: Any,
                 strategy: Any = None, calibration: Calibration | None = None) -> dict[str, dict[str, float]]:
        cells: dict[str, dict[str, float]] = {}
        for language in wanted:
            bar.update(task, description=f"{label} on {language}")
            if strategy is not None:  # the package's adapter for this language, at this language's scale
                if self.scales:
                    strategy.scale(model, "xft-eval", scale_for(self.scales, language))
                strategy.activate(model, "xft-eval", language)
            rows = self.parts[language].rows
            predictions = predict_rows(self.base.head, model, self.base.tokenizer, with_language(rows, language),
                                       batch_size=self.batch_size, max_length=self.max_length, precision=self.precision)
            if calibration is not None and calibration.prior(language) is not None:
                predictions = calibration.apply(predictions, language)
                self.applied.setdefault(label, []).append(language)
            cells[language] = score(self.base.head, self.pm, predictions, rows)
            bar.advance(task)
        return cells


def _config_value(runs: list[Path], get: Any, default: Any) -> Any:
    from xft_core.config import ConfigError, load_config

    for root in runs:
        try:
            return get(load_config(root / CONFIG))
        except ConfigError:
            continue
    return default


# -------------------------------------------------------------------------------------------------- API
@dataclass
class Evaluation:
    matrix: TransferMatrix
    paths: dict[str, Path]  # json, csv, md, png, and curves (one per run source) when written


def default_report_folder(sources: Sequence[str | Path]) -> Path:
    """`<first run>/report`; for packages outside any run, ./xft-report."""
    for source in sources:
        path = Path(source)
        root = path if (path / "adapters").is_dir() else run_root(path) or run_root(path / "x")
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
            raise ConfigError(f"Metric '{metric}' (--metric) is not one of the {manifest.data.get('task')} head's "
                              f"metrics: {', '.join(names)}")
    matrix = transfer_matrix(sources, data, **options)
    folder = Path(out) if out else default_report_folder(sources)
    paths = write_reports(matrix, folder, metric=metric)
    if curves:
        _, runs = plan_rows(sources)
        for root in runs:
            if (root / METRICS).is_file():
                name = "training_curves.png" if len(runs) == 1 else f"training_curves-{root.name}.png"
                paths[f"curves:{root.name}"] = training_curves(root, folder / name, metric=metric)
    return Evaluation(matrix, paths)
