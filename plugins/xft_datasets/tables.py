"""Rows of a table (Parquet, a `datasets` split) -> DataParts per (language, split), and the lazy imports."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from xft_core.hooks import DataPart, DataRequest, DataSourceError

INSTALL = "pip install 'xft[datasets]' (or: pip install datasets pyarrow)"


def require(module: str, reference: str) -> Any:
    """`datasets` or `pyarrow`, imported when data needs it; missing: an error naming the data and the install line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataSourceError(f"{reference}: reading it needs the Python package '{module.split('.')[0]}': {INSTALL}") from None


def by_language(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], origin: str, request: DataRequest, *,
                language: str | None = None, split: str | None = None) -> Iterator[DataPart]:
    """DataParts of one table. With `language` given (a file name, a config) the rows are kept as they are; else each
    row's language is taken out of the column `request.language_field` (missing: an error naming the columns
    present). With `split` given it is the split of every row; else the `split` column, rows without one training
    rows, as the file reader reads one file."""
    field = request.language_field
    if language is None and field not in columns:
        raise DataSourceError(f"{origin}: no language column '{field}' (columns: {', '.join(columns) or 'none'}). Name "
                              "the column that holds each row's language with data.language_field, or give one table "
                              "per language")
    parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number, source_row in enumerate(rows, 1):
        row = dict(source_row)
        row_language = language
        if row_language is None:
            value = row.pop(field, None)
            row_language = value.strip() if isinstance(value, str) else value
            if not isinstance(row_language, str) or not row_language:
                raise DataSourceError(f"{origin} row {number}: no language in column '{field}' (got {value!r})")
        row_split = split
        if row_split is None:
            value = row.pop(request.split_field, None)
            row_split = (value.strip() if isinstance(value, str) else value) or "train"
            if not isinstance(row_split, str):
                raise DataSourceError(f"{origin} row {number}: column '{request.split_field}' holds {value!r}, not a split name")
        parts.setdefault((row_language, row_split), []).append(row)
    for (row_language, row_split), chosen in parts.items():
        yield DataPart(language=row_language, split=row_split, rows=chosen, origin=origin)
