"""Source `hub`: `hf://<id>` or `hub:<id>`, a Hub dataset read with `datasets.load_dataset` from the local cache only.

Nothing is downloaded: the cache is looked at first (`<cache>/<namespace>___<name>/<config>/<version>/<hash>`, where
`datasets` leaves what `load_dataset` prepared), and `load_dataset` runs with the Hub offline. The cache is
`$HF_DATASETS_CACHE`, else `$HF_HOME/datasets`, else `~/.cache/huggingface/datasets`."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from xft_core.hooks import DataPart, DataRequest, DataSourceError
from xft_datasets.saved import dataset_parts
from xft_datasets.tables import require

PREFIXES = ("hf://datasets/", "hf://", "hub:")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def matches_hub(reference: str) -> bool:
    return reference.startswith(("hf://", "hub:"))


def dataset_id(reference: str) -> str:
    for prefix in PREFIXES:
        if reference.startswith(prefix):
            found = reference[len(prefix):].strip("/")
            if _ID.match(found):
                return found
            break
    raise DataSourceError(f"{reference!r} is not a Hub dataset reference: write hf://<id> or hub:<id>, for example "
                          "hf://mteb/amazon_reviews_multi or hub:my-org/my-data")


def cache_root() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "datasets"
    return Path.home() / ".cache" / "huggingface" / "datasets"


def _snake(name: str) -> str:
    """datasets' `camelcase_to_snakecase`, which names the cache folder of a dataset."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def cached_configs(identifier: str, root: Path) -> list[str]:
    """The configs of `identifier` that `datasets` has prepared in the cache `root`."""
    parts = identifier.split("/")
    folder = root / "___".join([*parts[:-1], _snake(parts[-1])])
    if not folder.is_dir():
        return []
    return sorted(c.name for c in folder.iterdir() if c.is_dir() and any(c.glob("*/*/dataset_info.json")))


def _cached_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(d.name.replace("___", "/") for d in root.iterdir() if d.is_dir() and any(d.glob("*/*/*/dataset_info.json")))


def choose_configs(identifier: str, configs: list[str], languages: tuple[str, ...]) -> tuple[list[str], bool]:
    """(configs to read, whether each config is one language). The asked languages, when they are configs; else the
    one cached config, whose rows carry a language column; with no languages asked, every config as a language."""
    if languages:
        present = [lang for lang in languages if lang in configs]
        if len(present) == len(languages):
            return list(languages), True
        if present:
            missing = [lang for lang in languages if lang not in configs]
            raise DataSourceError(f"Hub dataset '{identifier}': languages {', '.join(missing)} are not cached configs "
                                  f"(cached configs: {', '.join(configs)}). Set data.languages to some of them, or load "
                                  "the missing configs once with datasets.load_dataset where there is network")
    if len(configs) == 1:
        return configs, False
    if languages:
        raise DataSourceError(f"Hub dataset '{identifier}': the languages {', '.join(languages)} are not among its cached "
                              f"configs ({', '.join(configs)}). Set data.languages to the configs to read, one per language")
    return configs, True


@contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """HF_DATASETS_OFFLINE=1 semantics for one call, also when `datasets` was imported before with the Hub online."""
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE, datasets.logging.get_verbosity())
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    datasets.logging.set_verbosity_error()  # "Using the latest cached version ..." is what was asked for, not news
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved[:2]
        datasets.logging.set_verbosity(saved[2])


def load_hub(request: DataRequest) -> Iterator[DataPart]:
    identifier = dataset_id(request.reference)
    root = cache_root()
    configs = cached_configs(identifier, root)
    if not configs:
        others = _cached_ids(root)
        raise DataSourceError(
            f"Hub dataset '{identifier}' is not in the local datasets cache ({root}); xft reads Hub datasets offline only "
            "and never downloads. Load it once where there is network (datasets.load_dataset) with HF_DATASETS_CACHE "
            "pointing at this cache, or save it with save_to_disk and give that folder as data.path. Datasets in the "
            f"cache: {', '.join(others) or 'none'}")
    chosen, per_language = choose_configs(identifier, configs, request.languages)
    datasets = require("datasets", request.reference)
    for config in chosen:
        with _offline(datasets):
            try:
                loaded = datasets.load_dataset(identifier, config, cache_dir=str(root),
                                               download_mode="reuse_dataset_if_exists")
            except Exception as exc:  # a cache folder datasets cannot reload
                raise DataSourceError(f"Hub dataset '{identifier}' config '{config}' could not be read from the cache "
                                      f"{root} ({type(exc).__name__}: {exc})") from None
        yield from dataset_parts(loaded, request.reference, request, config=config if len(configs) > 1 else "",
                                 language=config if per_language else None)
