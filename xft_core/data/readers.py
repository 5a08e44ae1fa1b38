"""Per-language data sets from JSONL/CSV/TSV files, validated with file and line numbers.

Layouts understood (config key `data`):
- a folder of `<language>.<split>.<ext>` files (ext: jsonl, json, csv, tsv);
- a folder of `<split>.<ext>` files, or one file, whose rows carry a `language` field (and, for one file,
  an optional `split` field; rows without one are training rows);
- an explicit mapping `files: {split: {language: path}}`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

EXTENSIONS = ("jsonl", "json", "csv", "tsv")
_NAME = re.compile(r"^(?P<lang>[^.]+)\.(?P<split>[^.]+)\.(?P<ext>jsonl|json|csv|tsv)$")
_SPLIT_ONLY = re.compile(r"^(?P<split>[^.]+)\.(?P<ext>jsonl|json|csv|tsv)$")


class DataError(ValueError):
    """Malformed data; the message names the file and line."""


@dataclass
class Split:
    """The rows of one language in one split, with where each came from."""

    language: str
    split: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)  # (file, line) per row

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class DataSet:
    """splits[split][language] -> Split"""

    splits: dict[str, dict[str, Split]] = field(default_factory=dict)

    def languages(self, split: str) -> list[str]:
        return sorted(self.splits.get(split, {}))

    def get(self, split: str, language: str) -> Split | None:
        return self.splits.get(split, {}).get(language)

    def add(self, language: str, split: str, row: dict[str, Any], where: tuple[str, int]) -> None:
        part = self.splits.setdefault(split, {}).setdefault(language, Split(language, split))
        part.rows.append(row)
        part.where.append(where)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every row of a JSONL/JSON/CSV/TSV file; malformed lines are DataErrors."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "json"):
        with path.open(encoding="utf-8") as handle:
            first = handle.read(1)
            handle.seek(0)
            if suffix == "json" and first == "[":
                try:
                    rows = json.load(handle)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from None
                for i, row in enumerate(rows, 1):
                    if not isinstance(row, dict):
                        raise DataError(f"{path} item {i}: expected an object with fields, got {type(row).__name__}")
                    yield i, row
                return
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
                yield number, row
    elif suffix in ("csv", "tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == "tsv" else ",")
            for row in reader:
                if None in row:
                    raise DataError(f"{path} line {reader.line_num}: more columns than the header "
                                    f"({', '.join(reader.fieldnames or [])})")
                yield reader.line_num, dict(row)
    else:
        raise DataError(f"{path}: unsupported file type '.{suffix}'. Use one of: {', '.join(EXTENSIONS)}")


def discover(
    path: str | Path,
    files: Mapping[str, Mapping[str, str]] | None = None,
    language_field: str = "language",
    rows: Mapping[str, Mapping[str, list]] | None = None,
) -> DataSet:
    """Read every data file the config points at into a DataSet (no validation of fields yet)."""
    data = DataSet()
    for split, by_language in (rows or {}).items():
        for language, items in by_language.items():
            for number, row in enumerate(items, 1):
                if not isinstance(row, Mapping):
                    raise DataError(f"data.rows.{split}.{language}[{number - 1}]: expected a mapping of fields, got {row!r}")
                data.add(language, split, dict(row), (f"data.rows.{split}.{language}", number))
    if files:
        for split, by_language in files.items():
            for language, file in by_language.items():
                _read_into(data, Path(file), split=split, language=language, language_field=language_field)
    if path:
        root = Path(path)
        if root.is_file():
            _read_into(data, root, split=None, language=None, language_field=language_field)
        elif root.is_dir():
            matched = False
            for file in sorted(root.iterdir()):
                m = _NAME.match(file.name)
                if m:
                    _read_into(data, file, split=m["split"], language=m["lang"], language_field=language_field)
                    matched = True
                    continue
                m = _SPLIT_ONLY.match(file.name)
                if m:
                    _read_into(data, file, split=m["split"], language=None, language_field=language_field)
                    matched = True
            if not matched:
                raise DataError(
                    f"{root}: no data files found. Expected <language>.<split>.<ext> (for example en.train.jsonl) "
                    f"or <split>.<ext> with a '{language_field}' field; ext one of: {', '.join(EXTENSIONS)}"
                )
        else:
            raise DataError(f"Data path not found: {root}")
    return data


def _read_into(data: DataSet, file: Path, *, split: str | None, language: str | None, language_field: str) -> None:
    if not file.is_file():
        raise DataError(f"Data file not found: {file}")
    for number, row in read_rows(file):
        row_language = language
        if row_language is None:
            row_language = row.pop(language_field, None)
            if not row_language:
                raise DataError(f"{file} line {number}: missing field '{language_field}' "
                                "(the file name does not say the language)")
        row_split = split or row.pop("split", None) or "train"
        data.add(str(row_language), str(row_split), row, (str(file), number))


def validate(data: DataSet, head: Any, splits: Iterable[str]) -> None:
    """Run the head's row checks over the given splits; the first error names file and line."""
    for split in splits:
        for part in data.splits.get(split, {}).values():
            for row, (file, line) in zip(part.rows, part.where):
                problem = head.validate_row(row)
                if problem:
                    raise DataError(f"{file} line {line}: {problem}")


def select(data: DataSet, split: str, languages: list[str], limit: int = 0, *, required: bool = True) -> dict[str, Split]:
    """The named languages of one split (first `limit` rows each when limit > 0)."""
    available = data.languages(split)
    chosen: dict[str, Split] = {}
    for language in languages:
        part = data.get(split, language)
        if part is None:
            if required:
                raise DataError(
                    f"No '{split}' data for language '{language}'. "
                    f"Languages with {split} data: {', '.join(available) or '(none)'}"
                )
            continue
        if limit and len(part) > limit:
            part = Split(language, split, part.rows[:limit], part.where[:limit])
        chosen[language] = part
    return chosen
