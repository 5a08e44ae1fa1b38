"""The plan of a transfer matrix: which rows it has (run folders and adapter packages turned into rows, which
adapter answers which language) and which columns (the evaluation data, per language)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from xft_core.adapters import MANIFEST, AdapterError, Manifest, packages_in
from xft_core.evaluation.matrix import PER_LANGUAGE_LABEL, MatrixRow
from xft_core.util.runfiles import CONFIG, is_run_folder


def calibration_packages(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Every adapter package of `sources` (run folders, adapters/ folders, packages), in order, each once."""
    found: list[Path] = []
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        path = Path(source)
        packages = [path] if (path / MANIFEST).is_file() else packages_in(path / "adapters") or packages_in(path)
        if not packages:
            raise AdapterError(f"{path}: neither an xft run folder (with adapters/<name>/{MANIFEST}) nor an adapter "
                               f"package ({MANIFEST})")
        found += [p for p in packages if p not in found]
    return found


def run_root(package: Path) -> Path | None:
    """The run folder a package lives in (runs/<name>/adapters/<adapter>), if it is one."""
    root = package.parent.parent
    return root if package.parent.name == "adapters" and is_run_folder(root) else None


def _language_label(languages: Sequence[str], adapter_name: str, few_shot: int = 0) -> str:
    if len(languages) == 1:
        return f"{languages[0]} ({few_shot}-shot)" if few_shot else f"{languages[0]} (zero-shot)"
    shown = "+".join(languages) if len(languages) <= 4 else f"{len(languages)} languages"
    return f"{adapter_name} ({shown}{f', {few_shot}-shot' if few_shot else ''})"


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
            packages, root, single = [path], run_root(path), True
        elif (path / "adapters").is_dir():
            packages, root, single = packages_in(path / "adapters"), path, False
        else:
            packages, root, single = packages_in(path), run_root(path / "x"), False
        if not packages:
            raise AdapterError(f"{path}: neither an xft run folder (with adapters/<name>/{MANIFEST}) "
                               f"nor an adapter package ({MANIFEST})")
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
                few = m.data.get("few_shot") or {}
                k = int(few.get("k", 0))
                rows.append(MatrixRow(_language_label(m.languages, name, k), "adapter", m.languages, {"*": str(p)},
                                      m.data.get("run", run_name), few_shot={lang: k for lang in few.get("languages", [])}))
    _unique_labels(rows)
    return rows, runs


def _is_per_language(root: Path | None, manifests: list[Manifest]) -> bool:
    if root is not None:
        from xft_core.config import ConfigError, load_config

        try:
            return load_config(root / CONFIG).adapters == "per_language"
        except ConfigError:
            pass
    languages = [m.languages for m in manifests]
    return (len(languages) > 1 and all(len(lang) == 1 for lang in languages)
            and len({lang[0] for lang in languages}) == len(languages))


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
def eval_data(data: Any, runs: list[Path], split: str | None, languages: Sequence[str] | None, head: Any,
              max_examples: int) -> tuple[dict[str, Any], str]:
    """(language -> Split, split name) for the evaluation columns, validated by the head."""
    from xft_core.config import RunConfig, load_config
    from xft_core.data import DataError, DataSet, select, validate
    from xft_core.data.loading import data_source_label, dataset_from_config, dataset_from_path

    if data is None:
        if not runs:
            raise DataError(f"No evaluation data: give the data folder (--data PATH) or a run folder whose {CONFIG} names it")
        data = load_config(runs[0] / CONFIG)
    if isinstance(data, RunConfig):
        split = split or data.data.test_split
        where = data_source_label(data.data)
        data = dataset_from_config(data.data)
    elif not isinstance(data, DataSet):
        where = str(data)
        data = dataset_from_path(data)
    else:
        where = "data set"
    split = split or "test"
    if not data.languages(split):
        present = ", ".join(sorted(data.splits)) or "none"
        raise DataError(f"No '{split}' split in {where} (splits present: {present}). "
                        "Choose one with --split (Python: split=...).")
    parts = select(data, split, list(languages or data.languages(split)), max_examples,
                   label_field=getattr(getattr(head, "fields", None), "label", None))
    validate(DataSet({split: parts}), head, [split])
    return parts, split
