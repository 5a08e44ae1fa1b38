"""A trained run as a teacher: its predictions on rows of several languages, each language answered by its own
adapter package when the run has one (per-language runs), else by the run's single package, with the package's
calibration for that language applied (what the router would answer). Self-training labels unlabelled text with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xft_core.adapters import AdapterError, Manifest
from xft_core.evaluation.calibration import ONE_PASS, Calibration, calibrated_head, run_settings
from xft_core.evaluation.plan import calibration_packages
from xft_core.evaluation.predict import predict_rows, with_language
from xft_core.util.languages import normalize


def package_for(packages: Mapping[Path, Manifest], language: str) -> Path:
    """The package that answers `language`: one trained on that language alone, else one that serves it among
    others, else the run's only (or first multilingual) package."""
    key = normalize(language)
    own = [p for p, m in packages.items() if [normalize(x) for x in m.languages] == [key]]
    serving = [p for p, m in packages.items() if key in {normalize(x) for x in m.serves}]
    shared = [p for p, m in packages.items() if len(m.languages) != 1] or list(packages)[:1]
    found = own or serving or shared
    if not found:
        raise AdapterError(f"no adapter package answers '{language}'")
    return found[0]


def teacher_predictions(source: str | Path, rows: Mapping[str, Sequence[Mapping[str, Any]]], *, pm: Any,
                        batch_size: int = 32, progress: bool = False, console: Any = None,
                        calibrate: str = "") -> dict[str, list[dict[str, Any]]]:
    """{language: predictions of its rows} by the packages of the run (or package) `source`.

    `calibrate` ("batch" or "batch-log"): each language's label prior is first estimated from the predictions of
    these very rows, stored in the package answering it (`calibration.json`) and applied: what `calibrate()` on
    the same rows and then labelling would give, with one forward pass per row instead of two."""
    if calibrate and calibrate not in ONE_PASS:
        raise ValueError(f"teacher_predictions estimates priors from its rows: calibrate is one of {', '.join(ONE_PASS)}")
    from xft_core.adapters import check_compatible, load_base, strategy_from_manifest
    from xft_core.util.console import progress as progress_bar
    from xft_core.util.precision import resolve_precision

    folders = calibration_packages(source)
    if calibrate:
        calibrated_head(folders, pm)  # a clear error for heads without a label prior (taggers)
    manifests = {p: Manifest.read(p) for p in folders}
    plan: dict[Path, list[str]] = {}
    for language in rows:
        plan.setdefault(package_for(manifests, language), []).append(language)
    base = load_base(folders[0], pm)
    max_length, precision = run_settings(folders[0])
    precision = resolve_precision(precision, "cpu")
    out: dict[str, list[dict[str, Any]]] = {}
    with progress_bar(console, enabled=progress, transient=True) as bar:
        task = bar.add_task("teacher", total=sum(len(r) for r in rows.values()))
        for package, languages in plan.items():
            _, strategy = strategy_from_manifest(check_compatible(base, package), pm)
            model = strategy.attach(base.model, package, "xft-teacher", base.head)
            calibration = Calibration.for_labels(package, base.head.labels) if calibrate else Calibration.read(package)
            try:
                for language in languages:
                    bar.update(task, description=f"{package.name} labels {language}")
                    strategy.activate(model, "xft-teacher", language)
                    predictions = predict_rows(base.head, model, base.tokenizer, with_language(rows[language], language),
                                               batch_size=batch_size, max_length=max_length, precision=precision)
                    if calibrate and calibration is not None:
                        calibration.estimate(language, predictions, calibrate, ["the rows it labelled"])
                    out[language] = calibration.apply(predictions, language) if calibration else predictions
                    bar.advance(task, len(rows[language]))
                if calibrate and calibration is not None:
                    calibration.write(package)
            finally:
                base.model = strategy.detach(model, "xft-teacher")
    return out
