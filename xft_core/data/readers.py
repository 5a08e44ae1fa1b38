"""Per-language data sets from JSONL/CSV/TSV files, validated with file and line numbers.

Layouts understood (config key `data`):
- a folder of `<language>.<split>.<ext>` files (ext: jsonl, json, csv, tsv);
- a folder of `<split>.<ext>` files, or one file, whose rows carry a `language` field (and, for one file,
  an optional `split` field; rows without one are training rows);
- an explicit mapping `files: {split: {language: path}}`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from xft_core.util.errors import DataWarning, UserError

EXTENSIONS = ("jsonl", "json", "csv", "tsv", "txt")  # txt: one text a line (unlabelled text), field "text"
_EXT = r"(?P<ext>(?i:jsonl|json|csv|tsv|txt))"  # the extension in any case: de.train.JSONL is read like de.train.jsonl
_NAME = re.compile(rf"^(?P<lang>[^.]+)\.(?P<split>[^.]+)\.{_EXT}$")
_SPLIT_ONLY = re.compile(r"^(?P<split>[^.]+)\.(?P<ext>(?i:jsonl|json|csv|tsv))$")  # a .txt has no language field
UNLABELLED_SPLIT = "unlabelled"  # the default split of text without labels (config key data.unlabelled_split)
PATTERN = "<language>.<split>.<ext> (for example en.train.jsonl), or <split>.<ext> with a language field"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_NAME = re.compile(r"[\s/\\:*?\"<>|\x00-\x1f\x7f]|^\.")  # language and split names become folder names


class DataError(UserError):
    """Malformed data; the message names the file and line."""


def warn(message: str) -> None:
    """A DataWarning through Python's `warnings` (the CLI prints it as a `warning:` line)."""
    warnings.warn(DataWarning(message), stacklevel=3)


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

    def files(self, split: str, language: str) -> str:
        """The files (or inline sections) the rows of one language and split came from, for messages."""
        part = self.get(split, language)
        return ", ".join(dict.fromkeys(file for file, _ in part.where)) if part else "no file"


class _Odd(ValueError):
    """A value json accepts but a data row must not hold (raised inside json.loads, caught below)."""


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every row of a JSONL/JSON/CSV/TSV/TXT file; malformed lines are DataErrors.

    A UTF-8 byte-order mark is accepted; bytes that are not UTF-8, values that are no text (NaN, lone surrogates),
    repeated fields, CSV rows with too few or too many cells and unbalanced quotes are errors naming the line."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in EXTENSIONS:
        raise DataError(f"{path}: unsupported file type '.{suffix}'. Use one of: {', '.join(EXTENSIONS)}")
    text = _read_text(path)
    if suffix == "txt":
        yield from _text_rows(path, text)
    elif suffix in ("jsonl", "json"):
        yield from _json_rows(path, text, array=suffix == "json" and text.lstrip().startswith("["))
    else:
        yield from _delimited_rows(path, text, "\t" if suffix == "tsv" else ",")


def _text_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """A plain text file: one row per non-blank line, its text (stripped) under "text"."""
    for number, line in enumerate(io.StringIO(text, newline=None), 1):
        if line.strip():
            _check_text(path, f"line {number}", {"text": line})
            yield number, {"text": line.strip()}


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path} line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {column} of the line). "
                        "Save the file as UTF-8 (for example: iconv -f cp1252 -t utf-8)") from None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise _Odd(f"field '{key}' appears twice in one object")
        row[key] = value
    return row


def _constant(name: str) -> Any:
    raise _Odd(f"{name} is not valid JSON (a missing value? write null, or leave the field out)")


def _parse(path: Path, where: str, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}" if where == "" else where
        raise DataError(f"{path} {at}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except _Odd as exc:
        raise DataError(f"{path}{' ' + where if where else ''}: {exc}") from None
    except RecursionError:
        raise DataError(f"{path}{' ' + where if where else ''}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # for example an integer of more than 4300 digits
        raise DataError(f"{path}{' ' + where if where else ''}: not valid JSON ({exc})") from None


def _json_rows(path: Path, text: str, *, array: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    if array:
        rows = _parse(path, "", text)
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise DataError(f"{path} item {i}: expected an object with fields, got {type(row).__name__}")
            _check_text(path, f"item {i}", row)
            yield i, row
        return
    for number, line in enumerate(io.StringIO(text, newline=None), 1):
        if not line.strip():
            continue
        row = _parse(path, f"line {number}", line)
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        _check_text(path, f"line {number}", row)
        yield number, row


def _check_text(path: Path | str, where: str, row: Mapping[str, Any]) -> None:
    """Every string in a row must be text: a lone surrogate (a broken \\u escape) is no character at all."""
    stack: list[tuple[str, Any]] = [(key, value) for key, value in row.items()]
    while stack:
        key, value = stack.pop()
        for text in (key, value) if isinstance(value, str) else (key,):
            found = _SURROGATE.search(text)
            if found:
                raise DataError(f"{path} {where}: field {key!r} holds a lone surrogate ({found.group()!r}), which is no "
                                "character (a broken \\u escape?); fix or remove it")
        if isinstance(value, dict):
            stack.extend((key, v) for v in value.values())
            stack.extend((key, k) for k in value)
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)


def _delimited_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    sep = "tab" if delimiter == "\t" else f"'{delimiter}'"
    header: list[str] | None = None
    spanning: list[str] = []  # line ranges of quoted fields that hold what looks like rows
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(_csv_problem(path, start, reader.line_num, str(exc), sep)) from None
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            repeated = [name for name, n in Counter(header).items() if n > 1]
            if repeated:
                raise DataError(f"{path} line {start}: column '{repeated[0]}' appears twice in the header")
            continue
        columns = ", ".join(header)
        if len(cells) > len(header):
            raise DataError(f"{path} line {start}: {len(cells)} cells, more columns than the header ({columns})")
        if len(cells) < len(header):
            raise DataError(f"{path} line {start}: {len(cells)} column{'s' if len(cells) > 1 else ''}, fewer than the "
                            f"{len(header)} of the header ({columns}); is a {sep} delimiter missing?")
        if reader.line_num > start and len(header) > 1 and any(
                len(line.split(delimiter)) >= len(header) for cell in cells for line in cell.splitlines()[1:]):
            spanning.append(f"{start}-{reader.line_num}")
        yield start, dict(zip(header, cells))
    if spanning:
        warn(f"{path} lines {', '.join(spanning[:3])}{' and more' if len(spanning) > 3 else ''}: a quoted field runs over "
             "several lines and holds lines that look like rows of their own. If a quote is unbalanced, those rows are "
             "swallowed into one cell; close it, or write a quote inside a quoted field twice (\"\")")


def _csv_problem(path: Path, start: int, line: int, problem: str, sep: str) -> str:
    if "unexpected end of data" in problem:
        return (f"{path} line {start}: a quoted field opened in the row that starts here is never closed, so every line "
                "after it would be swallowed into one cell; close the quote, or write a quote inside a field twice (\"\")")
    if "expected after" in problem:
        opened = f" (the row starts at line {start}: is a quote there unbalanced?)" if start != line else ""
        return (f"{path} line {line}: a quote closes a quoted field but more text follows before the next {sep}{opened}; "
                "quote the whole cell and write a quote inside it twice (\"\")")
    if "field larger than field limit" in problem:
        return (f"{path} line {start}: a cell longer than {csv.field_size_limit()} characters "
                "(an unbalanced quote that runs on to the end of the file?)")
    if "NUL" in problem:
        return f"{path} line {line}: the line holds a NUL byte (a binary file, or UTF-16? save it as UTF-8 text)"
    return f"{path} line {line}: not valid CSV ({problem})"


def discover(
    path: str | Path,
    files: Mapping[str, Mapping[str, str]] | None = None,
    language_field: str = "language",
    rows: Mapping[str, Mapping[str, list]] | None = None,
) -> DataSet:
    """Read every data file the config points at into a DataSet (no validation of fields yet).

    Files in a folder whose names match neither pattern are skipped with a DataWarning naming them; so are empty
    files (a DataWarning: they add no rows), and two files for one language and split are both read (a warning)."""
    data = DataSet()
    for split, by_language in (rows or {}).items():
        if not isinstance(by_language, Mapping):
            raise DataError(f"data.rows.{split}: expected a mapping of languages to lists of rows, got {by_language!r}")
        for language, items in by_language.items():
            if not isinstance(items, list):
                raise DataError(f"data.rows.{split}.{language}: expected a list of rows, got {type(items).__name__}")
            _check_name(f"data.rows.{split}.{language}", "language", language)
            for number, row in enumerate(items, 1):
                if not isinstance(row, Mapping):
                    raise DataError(f"data.rows.{split}.{language}[{number - 1}]: expected a mapping of fields, got {row!r}")
                _check_text(f"data.rows.{split}.{language}", f"[{number - 1}]", row)
                data.add(language, split, dict(row), (f"data.rows.{split}.{language}", number))
    for split, by_language in (files or {}).items():
        if not isinstance(by_language, Mapping):
            raise DataError(f"data.files.{split}: expected a mapping of languages to files, got {by_language!r}")
        for language, file in by_language.items():
            _check_name(f"data.files.{split}.{language}", "language", language)
            _read_into(data, Path(str(file)), split=split, language=language, language_field=language_field)
    if path:
        root = Path(path)
        if root.is_file():
            _read_into(data, root, split=None, language=None, language_field=language_field)
        elif root.is_dir():
            _read_folder(data, root, language_field)
        else:
            raise DataError(f"Data path not found: {root}")
    return data


def _read_folder(data: DataSet, root: Path, language_field: str) -> None:
    matched = False
    read: dict[tuple[str, str], list[Path]] = {}
    for file in sorted(root.iterdir()):
        m = _NAME.match(file.name) or _SPLIT_ONLY.match(file.name)
        if not m or not file.is_file():
            if not file.name.startswith(".") and file.is_file() and set(file.name.lower().split(".")[1:]) & set(EXTENSIONS):
                warn(f"{file}: skipped, the name does not match {PATTERN}; rename it to read it")
            continue
        language = m.groupdict().get("lang")
        _read_into(data, file, split=m["split"], language=language, language_field=language_field)
        read.setdefault((m["split"], language or ""), []).append(file)
        matched = True
    for (split, language), found in read.items():
        if language and len(found) > 1:
            warn(f"{', '.join(map(str, found))}: {len(found)} files for language '{language}', split '{split}'; the rows "
                 "of all of them are read (a left-over conversion would add every row twice)")
    if not matched:
        raise DataError(f"{root}: no data files found. Expected {PATTERN}; ext one of: {', '.join(EXTENSIONS)}")


def _check_name(where: str, what: str, value: Any) -> str:
    if not isinstance(value, str) or not value or _BAD_NAME.search(value):
        raise DataError(f"{where}: {what} {value!r} is not a {what} name (a non-empty string without spaces, "
                        "slashes or a leading dot, for example en or zh-Hans)")
    return value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _read_into(data: DataSet, file: Path, *, split: str | None, language: str | None, language_field: str) -> None:
    if not file.is_file():
        raise DataError(f"Data file not found: {file}")
    count = 0
    for number, row in read_rows(file):
        row_language = language
        if row_language is None:
            row_language = _stripped(row.pop(language_field, None))
            if row_language is None or row_language == "":
                raise DataError(f"{file} line {number}: missing field '{language_field}' "
                                "(the file name does not say the language)")
            _check_name(f"{file} line {number}: field '{language_field}'", "language", row_language)
        row_split = split or _stripped(row.pop("split", None)) or "train"
        _check_name(f"{file} line {number}: field 'split'", "split", row_split)
        data.add(row_language, row_split, row, (str(file), number))
        count += 1
    if not count:
        warn(f"{file}: no rows (an empty file), so it adds nothing" + (f" to '{language}'" if language else ""))


def validate(data: DataSet, head: Any, splits: Iterable[str]) -> None:
    """Run the head's row checks over the given splits; the first error names file and line."""
    for split in splits:
        for part in data.splits.get(split, {}).values():
            for row, (file, line) in zip(part.rows, part.where):
                problem = head.validate_row(row)
                if problem:
                    raise DataError(f"{file} line {line}: {problem}")


def select(data: DataSet, split: str, languages: list[str], limit: int = 0, *, required: bool = True,
           label_field: str | None = None) -> dict[str, Split]:
    """The named languages of one split; with `limit`, at most that many rows each, drawn across the file
    reproducibly and stratified by `label_field` where rows have one (`data/sampling.py`), not the first rows."""
    from xft_core.data.sampling import spread_indices

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
            labels = [row.get(label_field) for row in part.rows] if label_field else None
            keep = spread_indices(len(part), limit, key=split, labels=labels)
            part = Split(language, split, [part.rows[i] for i in keep], [part.where[i] for i in keep])
        chosen[language] = part
    return chosen
