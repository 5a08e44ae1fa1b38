"""Data from the `xft_data_sources` plugins: a `data.path` reference a source matches (Parquet, a saved `datasets`
folder, a Hub id) is read by that source; anything else by xft's own `<lang>.<split>` file reader, as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from xft_core.data.readers import DataError, DataSet, _check_name, _check_text, warn
from xft_core.hooks.descriptors import DataRequest, DataSourceError, DataSourceSpec
from xft_core.hooks.manager import PluginError, collect

if TYPE_CHECKING:
    from xft_core.config import DataConfig

_DEV_NAMES = ("validation", "valid", "val", "dev")


def find_source(reference: str, pm: Any) -> tuple[DataSourceSpec, str] | None:
    """(the source that reads `reference`, its plugin): highest priority first; None when none does (the file reader's)."""
    sources = sorted(collect(pm, "data_sources").values(), key=lambda p: -p.spec.priority)
    for provided in sources:
        try:
            if provided.spec.matches(reference):
                return provided.spec, provided.plugin
        except Exception as exc:  # a broken matcher must name its plugin, not look like a data problem
            raise PluginError(f"Data source '{provided.spec.name}' (plugin '{provided.plugin}') failed on "
                              f"{reference!r}: {type(exc).__name__}: {exc}") from exc
    return None


def request_for(data: DataConfig) -> DataRequest:
    chosen = list(data.languages) or list(dict.fromkeys([*data.train_languages, *data.eval_languages]))
    return DataRequest(reference=data.path, language_field=data.language_field, languages=tuple(chosen))


def read_source(into: DataSet, source: DataSourceSpec, plugin: str, request: DataRequest) -> None:
    """Every part the source yields, added to `into` with its origin and row numbers; names and text checked as the
    file reader checks them. A DataSourceError becomes a DataError; anything else a PluginError naming the plugin."""
    count = 0
    try:
        for part in source.load(request):
            where = part.origin or request.reference
            _check_name(f"{where}: language", "language", part.language)
            _check_name(f"{where}: split", "split", part.split)
            for number, row in enumerate(part.rows, 1):
                if not isinstance(row, Mapping):
                    raise DataError(f"{where} row {number}: expected a mapping of fields, got {type(row).__name__}")
                _check_text(where, f"row {number}", row)
                into.add(part.language, part.split, dict(row), (where, number))
                count += 1
    except DataSourceError as exc:
        raise DataError(str(exc)) from None
    except (DataError, PluginError):
        raise
    except Exception as exc:
        raise PluginError(f"Data source '{source.name}' (plugin '{plugin}') failed to read {request.reference!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not count:
        raise DataError(f"{request.reference}: no rows (read by data source '{source.name}')")


def check_splits(data: DataSet, d: DataConfig, source: str) -> None:
    """The configured train split must be there (an error naming the splits present); a missing dev split with a
    `validation`-like split present is a warning naming the config key to set."""
    present = sorted(data.splits)
    if d.train_split not in data.splits:
        raise DataError(f"{d.path}: no '{d.train_split}' split (read by data source '{source}'). Splits present: "
                        f"{', '.join(present) or '(none)'}; choose one with data.train_split")
    if d.dev_split not in data.splits:
        alike = [name for name in _DEV_NAMES if name in data.splits]
        if alike:
            warn(f"{d.path}: no '{d.dev_split}' split, but '{alike[0]}' is there (splits present: {', '.join(present)}); "
                 f"set data.dev_split: {alike[0]} to evaluate on it")
