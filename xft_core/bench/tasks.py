"""The tasks of the transfer suite: where their data is, how it is split, which languages are evaluated.

Every task trains on English and evaluates zero-shot on the others. Data is read from a folder laid out like
`../shared/data` (SIB-200, XNLI, UD POS); splits the source does not have are written into the suite's own
output folder at run time (never into the project).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xft_core.data import DataError
from xft_core.data.sampling import spread_sample  # the suite draws its rows as `xft eval --max-examples` does

UNLABELLED = "unlabelled"
# XNLI's dev lines (0-based ends): training rows, then the targets' unlabelled rows, then the test rows; premises
# come in groups of 3 (lines 3k+1..3k+3), and the first two cuts fall between groups
XNLI_TRAIN_ROWS = 1491
XNLI_UNLABELLED_END = 1989
XNLI_TEST_START = 1990  # the test lines as in every earlier table: 1991-2490 less the 2 whose premise is in 1989-1990


@dataclass(frozen=True)
class SuiteTask:
    name: str
    kind: str  # "classification" or "tagging": which recipes apply
    folder: str  # under the data root
    source: str  # the training language
    targets: tuple[str, ...]  # zero-shot evaluation languages
    eval_split: str = "test"
    template: str = "auto"  # prompt-classification template for this task
    label_words: dict[str, str] = field(default_factory=dict)
    max_length: int = 128
    how: str = ""  # how the splits are made, for the report
    steps: int = 40  # the suite's step budget for every recipe on this task, unless --steps says otherwise
    unlabelled_split: str = UNLABELLED
    unlabelled_how: str = ""  # where the targets' unlabelled text comes from, for the report
    parallel: bool = False  # the languages' evaluation files hold the same items in the same order (translations)

    @property
    def languages(self) -> list[str]:
        return [self.source, *self.targets]


TASKS = {
    "sib200": SuiteTask(
        "sib200", "classification", "sib200", "eng", ("deu", "fra", "spa", "rus", "zho", "arb", "hin", "swh", "yor"),
        template="topic", label_words={"science/technology": "science"}, max_length=128,
        how="SIB-200 as shipped: train on eng.train (701 rows), evaluate on each language's test split (204 rows); "
            "the sets are parallel, so no test row is a translation of a training row",
        unlabelled_how="each target's dev split without its labels (99 rows: items neither in train nor in test, so "
                       "never a translation of a training or evaluation row)", parallel=True),
    "xnli": SuiteTask(
        "xnli", "classification", "nli", "en",
        ("ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"),
        template="nli", max_length=160, steps=300,  # at 150 the verbalizer is still learning English (docs/transfer.md)
        how=f"XNLI has only dev (2490 parallel rows per language, premises in groups of 3): train on en lines "
            f"1-{XNLI_TRAIN_ROWS}, evaluate every language on lines {XNLI_TEST_START + 1}-2490 less the 2 whose premise "
            f"also occurs in lines 1-{XNLI_TEST_START} (498 rows), so no test row is a translation of a training row and "
            "no test premise was seen in training",
        unlabelled_how=f"lines {XNLI_TRAIN_ROWS + 1}-{XNLI_UNLABELLED_END} of each target without labels (whole premise "
                       "groups, disjoint from the training and the test lines)", parallel=True),
    "udpos": SuiteTask(
        "udpos", "tagging", "ud_pos", "en", ("af", "de", "el", "es", "fr", "hi", "te", "tr", "vi", "zh"),
        max_length=128, how="UD POS as shipped: train on en.train, evaluate on each language's test split",
        unlabelled_how="each target's dev split without its tags (other sentences than the test split); Hindi has no "
                       "dev split: its test sentences outside the evaluation sample"),
}


def task_data(task: SuiteTask, data_root: Path, out: Path, *, eval_rows: int = 0, train_rows: int = 0,
              source_eval_rows: int = 0, unlabelled_rows: int | None = None) -> Path:
    """The folder of `<lang>.<split>.jsonl` files the suite trains and evaluates on (written under `out` when the
    source must be split or cut; the shipped folder itself otherwise). `eval_rows` cuts each target language's
    evaluation split, `source_eval_rows` the source language's (0: all its rows). `unlabelled_rows` (None: no
    unlabelled text; 0: all there is) writes `<language>.unlabelled.jsonl`: texts without labels, for each target
    from rows disjoint from training and evaluation (`SuiteTask.unlabelled_how`), for the source from its own
    training rows."""
    source = Path(data_root) / task.folder
    if not source.is_dir():
        raise DataError(f"{source}: no such data folder for task '{task.name}' (give --data, the folder holding "
                        f"{', '.join(sorted({t.folder for t in TASKS.values()}))})")
    if task.name != "xnli" and not eval_rows and not train_rows and not source_eval_rows and unlabelled_rows is None:
        return source
    target = Path(out) / "data" / task.name
    target.mkdir(parents=True, exist_ok=True)
    if task.name == "xnli":  # parallel lines: a test line whose premise is also a training premise goes everywhere
        english = _read(source / f"{task.source}.dev.jsonl")
        seen = {row["text"] for row in english[:XNLI_TEST_START]}
        test_lines = [i for i in range(XNLI_TEST_START, len(english)) if english[i]["text"] not in seen]
    for language in task.languages:
        if task.name == "xnli":
            rows = _read(source / f"{language}.dev.jsonl")
            splits = {"train": rows[:XNLI_TRAIN_ROWS], task.eval_split: [rows[i] for i in test_lines]}
            pool = rows[XNLI_TRAIN_ROWS:XNLI_UNLABELLED_END]
        else:  # the source's dev split too (the runs' own log; with all training rows, so it holds no unseen label)
            own_dev = language == task.source and not train_rows
            wanted = ("train", task.eval_split, *(("dev",) if own_dev else ()))
            splits = {split: _read(source / f"{language}.{split}.jsonl")
                      for split in wanted if (source / f"{language}.{split}.jsonl").is_file()}
            pool = _read(source / f"{language}.dev.jsonl") if (source / f"{language}.dev.jsonl").is_file() else []
        for split, rows in splits.items():
            limit = train_rows if split != task.eval_split else source_eval_rows if language == task.source else eval_rows
            kept = spread_sample(rows, limit, key=f"{task.name}:{split}")
            _write(target / f"{language}.{split}.jsonl", kept)
            if split == task.eval_split and not pool:  # no dev split: the test rows left out of the evaluation
                pool = [row for row in rows if row not in kept]
        if language == task.source:  # the source's own training texts (MAD-X's source language adapter)
            pool = splits.get("train", [])
        if unlabelled_rows is not None and pool:
            texts = [without_labels(row) for row in spread_sample(pool, unlabelled_rows, key=f"{task.name}:unlabelled")]
            _write(target / f"{language}.{task.unlabelled_split}.jsonl", texts)
    return target


LABEL_FIELDS = ("label", "tags")


def without_labels(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in LABEL_FIELDS}


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: missing (the transfer suite needs it)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    from xft_core.util.files import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
