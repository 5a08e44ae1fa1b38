"""Built-in data sources: Parquet files, a folder written by `datasets`' `save_to_disk`, and a Hub dataset already in
the local `datasets` cache. Each yields rows per (language, split) exactly as xft's `<lang>.<split>` file reader
does; references no source matches stay with that reader.

- ``hub`` (30): ``hf://<id>`` or ``hub:<id>`` (``hf://datasets/<id>`` too), read with ``datasets.load_dataset`` from
  the local cache only, offline (nothing is ever downloaded). One config per language (``data.languages`` picks
  them; by default the train and eval languages, else every cached config), or one config with a language column.
- ``saved-dataset`` (20): a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``; the
  DatasetDict keys are the splits, the languages come from the column ``data.language_field`` (``language``).
- ``parquet`` (10): a folder of ``<lang>.<split>.parquet`` (or ``<split>.parquet`` with a language column), or one
  ``.parquet`` file with a language column (and an optional ``split`` column; rows without one are training rows).

``datasets`` and ``pyarrow`` are imported only when such data is read (``pip install 'xft[datasets]'``).
"""

from __future__ import annotations

from xft_core.hooks import DataSourceSpec, hookimpl
from xft_datasets.hub import load_hub, matches_hub
from xft_datasets.parquet import load_parquet, matches_parquet
from xft_datasets.saved import load_saved, matches_saved


@hookimpl
def xft_data_sources():
    yield DataSourceSpec(
        name="hub", matches=matches_hub, load=load_hub, priority=30,
        description="hf://<id> or hub:<id>: a Hub dataset already in the local datasets cache (offline, never "
        "downloaded); one config per language (data.languages) or a language column.",
    )
    yield DataSourceSpec(
        name="saved-dataset", matches=matches_saved, load=load_saved, priority=20,
        description="A folder written by datasets' save_to_disk: splits as DatasetDict keys, languages from the "
        "data.language_field column.",
    )
    yield DataSourceSpec(
        name="parquet", matches=matches_parquet, load=load_parquet, priority=10,
        description="A folder of <lang>.<split>.parquet files, or one .parquet file with a language column.",
    )
