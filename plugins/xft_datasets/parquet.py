"""Source `parquet`: a folder of `<lang>.<split>.parquet` (or `<split>.parquet` with a language column) files, or one
`.parquet` file with a language column."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterator

from xft_core.hooks import DataPart, DataRequest, DataSourceError, DataWarning
from xft_datasets.tables import by_language, require

_NAME = re.compile(r"^(?P<lang>[^.]+)\.(?P<split>[^.]+)\.parquet$", re.IGNORECASE)
_SPLIT_ONLY = re.compile(r"^(?P<split>[^.]+)\.parquet$", re.IGNORECASE)
_FILE_READER = (".jsonl", ".json", ".csv", ".tsv")  # a folder holding these stays with xft's own file reader
PATTERN = "<language>.<split>.parquet (for example en.train.parquet), or <split>.parquet with a language column"


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet" and path.is_file()


def matches_parquet(reference: str) -> bool:
    """One .parquet file, or a folder with .parquet files and no JSONL/JSON/CSV/TSV file (a folder of those is read
    by the file reader as before, whatever else it holds)."""
    path = Path(reference)
    if _is_parquet(path):
        return True
    if not path.is_dir():
        return False
    files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")]
    return any(_is_parquet(f) for f in files) and not any(f.suffix.lower() in _FILE_READER for f in files)


def load_parquet(request: DataRequest) -> Iterator[DataPart]:
    path = Path(request.reference)
    if path.is_file():
        yield from _read(path, request, language=None, split=None)
        return
    for file in sorted(f for f in path.iterdir() if _is_parquet(f)):
        named = _NAME.match(file.name)
        split_only = _SPLIT_ONLY.match(file.name)
        if named:
            yield from _read(file, request, language=named["lang"], split=named["split"])
        elif split_only:
            yield from _read(file, request, language=None, split=split_only["split"])
        else:
            warnings.warn(DataWarning(f"{file}: skipped, the name does not match {PATTERN}; rename it to read it"),
                          stacklevel=2)


def _read(file: Path, request: DataRequest, *, language: str | None, split: str | None) -> Iterator[DataPart]:
    parquet = require("pyarrow.parquet", str(file))
    if file.stat().st_size == 0:  # as the file reader says of an empty .jsonl
        warnings.warn(DataWarning(f"{file}: no rows (an empty file), so it adds nothing"), stacklevel=2)
        return
    try:
        table = parquet.read_table(file)
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, OSError) for a file that is no Parquet
        raise DataSourceError(f"{file}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    rows = table.to_pylist()
    if not rows:
        warnings.warn(DataWarning(f"{file}: no rows (an empty table), so it adds nothing"), stacklevel=2)
        return
    yield from by_language(rows, table.column_names, str(file), request, language=language, split=split)
