"""What a run folder holds and where (`runs/<name>/...`), and the one reader of its metrics log.

Training writes these files; evaluation, the router and the CLI find runs and adapters through the same
names, so the layout is written down once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xft_core.util.errors import UserError
from xft_core.util.files import atomic_folder, atomic_write_text

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
RUN_INFO = "run.json"


@dataclass(frozen=True)
class RunPaths:
    """runs/<name>/{config.yaml, metrics.jsonl, run.json, checkpoints/, adapters/, report/}"""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def report(self) -> Path:
        return self.root / "report"


def run_outputs(paths: RunPaths) -> list[str]:
    """What a run folder holds that a fresh run would overwrite: checkpoints, adapter packages, metrics.jsonl and
    run.json, as paths relative to the run folder (temporaries of interrupted writes are not outputs)."""
    found = [f"{folder.name}/{p.name}" for folder in (paths.checkpoints, paths.adapters) if folder.is_dir()
             for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    return found + [p.name for p in (paths.metrics, paths.run_info) if p.exists()]


def is_run_folder(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def copy_run(source: Path, target: Path) -> None:
    """A run folder's config, run.json, metrics and adapters at `target` (written atomically, replacing what is
    there), without its checkpoints, self-training rounds, report and tracker logs: a copy to evaluate or to
    calibrate while the source stays as trained."""
    import shutil

    with atomic_folder(Path(target)) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoints", "rounds", "report", "trackers"))


def read_jsonl_log(path: Path, *, what: str = "record", drop_torn: str = "") -> list[dict[str, Any]]:
    """The JSON objects of an append-only log (metrics.jsonl, the suite's results.jsonl), one per line.

    A last line cut short by a crash (it does not parse, only blank lines follow) is skipped; `drop_torn` (what
    follows, for the warning) also removes it from the file, so the next append starts on a line of its own. Any other line that
    is not a JSON object is an error naming file and line; `what` says what a line holds, for that message."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
            continue
        if record is None and all(not rest.strip() for rest in lines[number:]):  # the last line, torn mid-append
            if drop_torn:
                import warnings

                from xft_core.util.errors import DataWarning

                warnings.warn(DataWarning(f"{path} line {number}: cut off (the process stopped while writing it); "
                                          f"dropped, {drop_torn}"), stacklevel=3)
                atomic_write_text(path, "".join(kept + "\n" for kept in lines[:number - 1] if kept.strip()))
            break
        raise UserError(f"{path} line {number}: not a JSON object (a {what}); repair or delete the line")
    return records


def read_metrics_log(path: Path, *, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (one per logged step or evaluation), optionally only up to a step.
    A line cut short by a crash (the last one) is skipped, not an error."""
    records = read_jsonl_log(path, what="logged step or evaluation")
    return [r for r in records if up_to_step is None or int(r.get("step", 0)) <= up_to_step]


def write_metrics_log(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
