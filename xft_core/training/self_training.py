"""Self-training on unlabelled target text (Dong & de Melo 2019; MultiFiT, Eisenschlos et al. 2019).

Round 0 trains on the labelled data as the config says, or is a copy of `self_training.teacher`, a run trained
before (self-training from the adapter a user has; the folder given is only read). In round k the adapter of
round k-1 (the teacher, its label prior calibrated per language first, unless `calibration: none`) labels every
target language's unlabelled rows; the confident ones, balanced per class (pseudo.py), are written to
`rounds/data-k/<language>.jsonl` with the labelled source rows, and round k trains on them (from the teacher's
weights, `start: teacher`) into one multilingual adapter or one per language. The run folder is laid out as
usual, so `xft eval`, `xft serve` and the router read it like any run:

    runs/<name>/config.yaml  run.json  metrics.jsonl (every round's lines, with "round")  adapters/ (the last round's)
    runs/<name>/rounds/round-0/  data-1/  round-1/  ...   (each round a complete run folder; data-k what it learnt)

Every round is a run of its own, so an interrupted self-training resumes (`--resume`) at the round it stopped in,
from that round's newest checkpoint; finished rounds and written pseudo-labels are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from xft_core.adapters import check_init_from, packages_in
from xft_core.config import ConfigError, RunConfig, load_config, save_config
from xft_core.data import DataError
from xft_core.data.readers import warn
from xft_core.data.unlabelled import unlabelled_rows
from xft_core.training.calibrate import calibrate_run
from xft_core.training.prepare import load_data, resolve_plugins
from xft_core.training.pseudo import Kept, select_labels, select_tags
from xft_core.training.resume import check_run_folder
from xft_core.training.run import Run
from xft_core.util.files import atomic_folder, atomic_write_json
from xft_core.util.runfiles import RUN_INFO, RunPaths, copy_run, read_metrics_log, write_metrics_log

SPLIT = "self-training"  # the split name of a round's training rows (data-k/<language>.jsonl)
SUMMARY = "summary.json"


def self_train(config: RunConfig, *, resume: bool = False, pm: Any = None, console: Any = None,
               progress: bool = True) -> Run:
    """Round 0 on the labelled data, then `self_training.rounds` rounds on pseudo-labelled target text; returns the
    last round's `Run` with the run folder's paths."""
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.util.console import console as make_console

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("self_training runs in one process for now (it labels text between rounds); start it without "
                          "torchrun / accelerate launch, or train the rounds yourself with init_from")
    pm = pm or get_plugin_manager()
    console = console or make_console(stderr=True)
    check_run_folder(config, resume)
    started = time.perf_counter()
    paths = RunPaths(config.run_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    if not (resume and paths.config.is_file()):
        save_config(config, paths.config)
    plan = _Plan(config, pm, console, progress, resume)
    teacher = plan.adopt_teacher() if config.self_training.teacher else plan.train_round(0, None)
    for k in range(1, config.self_training.rounds + 1):
        data_dir = plan.label(k, teacher.folder)
        teacher = plan.train_round(k, data_dir, init_from=plan.start_from(teacher.folder))
    return plan.finish(teacher, started)


class _Round:
    def __init__(self, folder: Path, run: Run | None):
        self.folder, self.run = folder, run


class _Plan:
    """What every round shares: the config, the head and data of round 0, the targets and their unlabelled rows."""

    def __init__(self, config: RunConfig, pm: Any, console: Any, progress: bool, resume: bool):
        self.config, self.pm, self.console, self.progress, self.resume = config, pm, console, progress, resume
        self.st = config.self_training
        self.rounds_dir = config.run_dir / "rounds"
        *_, self.head = resolve_plugins(config, pm)
        self.data, self.train_rows, dev = load_data(config, self.head, pm)
        self.evaluated = list(dev)
        d = config.data
        available = sorted({lang for split in (d.unlabelled_split, *d.unlabelled_from) for lang in self.data.languages(split)})
        self.targets = list(self.st.languages) or [lang for lang in available if lang not in self.train_rows]
        if not self.targets:
            raise DataError(f"self_training: no target language has unlabelled text ('{d.unlabelled_split}' split: "
                            f"<lang>.{d.unlabelled_split}.jsonl or .txt, or data.unlabelled_from) that is not trained on "
                            f"already; languages with unlabelled text: {', '.join(available) or 'none'}")
        self.unlabelled = unlabelled_rows(self.data, d, self.head, self.targets, evaluated=self.evaluated,
                                          limit=self.st.max_rows)
        missing = [lang for lang in self.targets if lang not in self.unlabelled]
        if missing:
            raise DataError(f"self_training.languages: no unlabelled text for {', '.join(missing)} (split "
                            f"'{d.unlabelled_split}'; languages with some: {', '.join(available) or 'none'})")
        self.forward_rows = 0
        self.summaries: list[dict[str, Any]] = []

    # ---------------------------------------------------------------------------------------- rounds
    def round_config(self, k: int, data_dir: Path | None, init_from: str = "") -> RunConfig:
        raw = self.config.to_dict()
        raw.update(name=f"round-{k}", output_dir=str(self.rounds_dir), self_training={}, calibration={})
        if data_dir is not None:
            languages = sorted(p.stem for p in data_dir.glob("*.jsonl"))
            training = raw["training"]
            training["max_steps"] = self.st.steps or training["max_steps"]
            training["learning_rate"] = self.st.learning_rate or training["learning_rate"]
            files = {split: dict(by_language) for split, by_language in raw["data"]["files"].items()}
            files[SPLIT] = {lang: str(data_dir / f"{lang}.jsonl") for lang in languages}
            raw["data"].update(train_split=SPLIT, files=files, train_languages=languages, few_shot=0, max_train_examples=0)
            raw.update(adapters=self.st.adapters, init_from=init_from)
        return load_config(raw)

    def train_round(self, k: int, data_dir: Path | None, *, init_from: str = "") -> _Round:
        from xft_core.training.loop import run_loop

        config = self.round_config(k, data_dir, init_from)
        folder = config.run_dir
        last = k == self.st.rounds
        if (folder / RUN_INFO).is_file() and not last:
            return _Round(folder, None)  # finished earlier: its adapters teach the next round
        self.console.rule(f"[bold]{self.config.name}: round {k} of {self.st.rounds}"
                          + (" (labelled data)" if k == 0 else f" ({', '.join(config.data.train_languages)})"))
        with warnings.catch_warnings():
            if data_dir is not None:  # a student reads the labelled rows through data-k/, not their own split
                warnings.filterwarnings("ignore", message=rf".*split '{self.config.data.train_split}' is not one this run reads")
            run = run_loop(config, resume=self.resume and folder.exists(), pm=self.pm, console=self.console,
                        progress=self.progress)
        return _Round(folder, run)

    def adopt_teacher(self) -> _Round:
        """Round 0 as a copy of `self_training.teacher`, a trained run folder (its adapters, run.json and metrics),
        after checking that its packages fit this run like an `init_from` package would; the folder given is only
        read. A resumed run keeps the copy it made."""
        from xft_core.models import resolve_model

        folder = self.rounds_dir / "round-0"
        if (folder / RUN_INFO).is_file():
            return _Round(folder, None)
        given = Path(self.st.teacher).expanduser()
        key = "self_training.teacher"
        packages = packages_in(given / "adapters")
        if not (given / RUN_INFO).is_file() or not packages:
            raise ConfigError(f"{key}: {given} is not a finished training run (it needs {RUN_INFO} and adapters/<name>/"
                              "xft.json); give the folder `xft train` wrote, runs/<name>")
        model_path = resolve_model(self.config.model, self.pm)
        for package in packages:
            check_init_from(package, model_path, task=self.config.task, label_info=self.head.label_info(),
                            adopted=getattr(self.head, "adopted_label_info", ()), key=key)
        self.console.print(f"{self.config.name}: round 0 is the trained run {given}", highlight=False, markup=False,
                           soft_wrap=True)
        copy_run(given, folder)
        return _Round(folder, None)

    def start_from(self, teacher: Path) -> str:
        """The package a round's adapters start from: the teacher's (its source language's, when it has one per
        language); none with `start: base`."""
        if self.st.start == "base":
            return ""
        packages = packages_in(teacher / "adapters")
        source = [p for p in packages if p.name in self.train_rows]
        return str((source or packages)[0])

    # ------------------------------------------------------------------------------------- labelling
    def label(self, k: int, teacher: Path) -> Path:
        """data-k/: each target's pseudo-labelled rows and the labelled source rows, plus summary.json; kept when a
        resumed run finds it complete."""
        data_dir = self.rounds_dir / f"data-{k}"
        if (data_dir / SUMMARY).is_file():
            self.summaries.append(json.loads((data_dir / SUMMARY).read_text(encoding="utf-8")))
            self.forward_rows += int(self.summaries[-1].get("forward_rows", 0))
            return data_dir
        from xft_core.evaluation.calibration import ONE_PASS, calibrate
        from xft_core.evaluation.teacher import teacher_predictions

        forward = 0
        method = self.st.calibration
        one_pass = method in ONE_PASS  # the prior comes from the very rows the teacher labels: one forward each
        if method != "none" and not one_pass:
            estimated = calibrate(teacher, None, languages=self.targets, method=method, texts=self.unlabelled,
                                  pm=self.pm, batch_size=self.config.training.eval_batch_size, progress=self.progress)
            forward += estimated.forward_rows
        rows = {lang: part.rows for lang, part in self.unlabelled.items()}
        predictions = teacher_predictions(teacher, rows, pm=self.pm, batch_size=self.config.training.eval_batch_size,
                                          progress=self.progress, console=self.console,
                                          calibrate=method if one_pass else "")
        forward += sum(len(r) for r in rows.values())
        kept = {lang: self.select(rows[lang], predictions[lang]) for lang in rows}
        summary = {"round": k, "teacher": str(teacher), "threshold": self.st.threshold, "per_class": self.st.per_class,
                   "balance": self.st.balance, "calibration": self.st.calibration, "forward_rows": forward,
                   "languages": {lang: part.summary() for lang, part in kept.items()},
                   "source_rows": {lang: len(part) for lang, part in self.train_rows.items()} if self.st.keep_source else {}}
        with atomic_folder(data_dir) as tmp:
            for lang, part in kept.items():
                if part.rows:
                    _write_rows(tmp / f"{lang}.jsonl", part.rows)
            if self.st.keep_source:
                for lang, split in self.train_rows.items():
                    _write_rows(tmp / f"{lang}.jsonl", split.rows, append=True)
            atomic_write_json(tmp / SUMMARY, summary)
        for lang, part in kept.items():
            self.console.print(f"round {k}: {lang}: kept {len(part.rows)} of {part.read} unlabelled rows"
                               + (f" ({', '.join(f'{c} {n}' for c, n in part.per_class.items())})" if part.per_class else ""),
                               highlight=False, soft_wrap=True, markup=False)
        if not any(part.rows for part in kept.values()):
            problem = (f"self_training round {k}: no pseudo-label reached the threshold {self.st.threshold} in any of "
                       f"{', '.join(kept)} (see {data_dir / SUMMARY}); lower self_training.threshold")
            if not self.st.keep_source:
                raise DataError(problem + ". With keep_source: false the round has nothing to train on")
            warn(problem + ". The round trains on the labelled rows only")
        self.summaries.append(summary)
        self.forward_rows += forward
        return data_dir

    def select(self, rows: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> Kept:
        fields = self.head.fields
        if fields.label:
            return select_labels(rows, predictions, label_field=fields.label, threshold=self.st.threshold,
                                 per_class=self.st.per_class, balance=self.st.balance)
        if fields.tags:
            return select_tags(rows, predictions, tokens_field=fields.text, tags_field=fields.tags,
                               threshold=self.st.threshold, max_rows=self.st.max_rows)
        raise ConfigError(f"self_training: the {self.config.task} head predicts neither a label per row nor a tag per word")

    # ------------------------------------------------------------------------------------------ finish
    def finish(self, last: _Round, started: float) -> Run:
        """The run folder's own files: the last round's adapters, every round's metrics, run.json with what each
        round learnt from and what it cost; then the final calibration when the config asks for one."""
        paths = RunPaths(self.config.run_dir)
        run = last.run
        assert run is not None, "the last round always runs"
        adapters = {}
        for package in packages_in(last.folder / "adapters"):
            with atomic_folder(paths.adapters / package.name) as tmp:
                shutil.copytree(package, tmp, dirs_exist_ok=True)
            adapters[package.name] = paths.adapters / package.name
        records = []
        for k in range(self.st.rounds + 1):
            records += [{**r, "round": k} for r in read_metrics_log(self.rounds_dir / f"round-{k}" / "metrics.jsonl")]
        write_metrics_log(paths.metrics, records)
        infos = [json.loads((self.rounds_dir / f"round-{k}" / RUN_INFO).read_text(encoding="utf-8"))
                 for k in range(self.st.rounds + 1)]
        extra_steps = sum(int(info["steps"]) for info in infos[1:])
        run.paths, run.adapter_dirs = paths, adapters
        run.wall_seconds = time.perf_counter() - started
        from xft_core.training.outputs import run_summary

        summary = {**run_summary(run), "name": self.config.name, "examples_per_second": infos[0]["examples_per_second"],
                   "self_training": {"targets": self.targets, "rounds": [
                       {"round": k, "steps": info["steps"], "examples_per_second": info["examples_per_second"],
                        "dev_metrics": info.get("dev_metrics", {}), **({"pseudo_labels": self.summaries[k - 1]} if k else {})}
                       for k, info in enumerate(infos)]},
                   "extra_cost": {"unlabelled_forward_rows": self.forward_rows, "extra_train_steps": extra_steps}}
        if self.config.calibration.method != "none":
            summary["calibration"] = calibrate_run(self.config, paths.root, self.data, self.head, self.evaluated, self.pm,
                                                   trained=list(self.train_rows), progress=self.progress)
            summary["extra_cost"]["unlabelled_forward_rows"] += summary["calibration"]["forward_rows"]
        atomic_write_json(paths.run_info, summary)
        return run


def _write_rows(path: Path, rows: list[dict[str, Any]], *, append: bool = False) -> None:
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if not str(k).startswith("__")}, ensure_ascii=False) + "\n")
