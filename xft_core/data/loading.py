"""From a run config's `data` section to rows: the one path that training, evaluation and the data check share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xft_core.data.readers import DataSet, discover

if TYPE_CHECKING:
    from xft_core.config import DataConfig


def dataset_from_config(data: DataConfig) -> DataSet:
    """Every row the `data` section names: `path` (folder or file), `files` and inline `rows`."""
    return discover(data.path, data.files, data.language_field, data.rows)


def data_source_label(data: DataConfig) -> str:
    """How to name where the data came from in a message."""
    return data.path or ("data.files" if data.files else "data.rows")
