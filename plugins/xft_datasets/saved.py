"""Source `saved-dataset`: a folder written by `datasets.Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from xft_core.hooks import DataPart, DataRequest, DataSourceError
from xft_datasets.tables import by_language, require

DICT_MARKER = "dataset_dict.json"  # what DatasetDict.save_to_disk writes at the top
DATASET_MARKERS = ("state.json", "dataset_info.json")  # what Dataset.save_to_disk writes


def matches_saved(reference: str) -> bool:
    path = Path(reference)
    return path.is_dir() and ((path / DICT_MARKER).is_file() or all((path / m).is_file() for m in DATASET_MARKERS))


def load_saved(request: DataRequest) -> Iterator[DataPart]:
    datasets = require("datasets", request.reference)
    try:
        loaded = datasets.load_from_disk(request.reference)
    except Exception as exc:  # a folder with the markers but broken or foreign contents
        raise DataSourceError(f"{request.reference}: not a readable saved dataset ({type(exc).__name__}: {exc})") from None
    yield from dataset_parts(loaded, request.reference, request)


def dataset_parts(loaded: Any, origin: str, request: DataRequest, *, config: str = "",
                  language: str | None = None) -> Iterator[DataPart]:
    """A DatasetDict (its keys are the splits) or one Dataset (a `split` column, else every row a training row);
    `config` (a Hub config) is named with the split in the origin: `hf://org/name [de/train]`."""
    if hasattr(loaded, "column_names") and not isinstance(loaded.column_names, dict):  # one Dataset
        label = f"{origin} [{config}]" if config else origin
        yield from by_language(loaded.to_list(), loaded.column_names, label, request, language=language)
        return
    if not len(loaded):
        raise DataSourceError(f"{origin}: the saved DatasetDict holds no splits")
    for split, part in loaded.items():
        label = f"{origin} [{config + '/' if config else ''}{split}]"
        yield from by_language(part.to_list(), part.column_names, label, request, language=language, split=split)
