"""Data sources (xft_data_sources): Parquet, a `save_to_disk` folder and a Hub dataset from the local cache read into
the same rows as the `<lang>.<split>` file reader; the file reader stays the fallback; errors name the choices."""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
datasets = pytest.importorskip("datasets")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import xft_datasets  # noqa: E402
from conftest import tiny_config  # noqa: E402
from xft_core.config import ConfigError  # noqa: E402
from xft_core.config.schema import DataConfig  # noqa: E402
from xft_core.data import DataError  # noqa: E402
from xft_core.data.loading import dataset_from_config, dataset_from_path  # noqa: E402
from xft_core.data.source_plugins import find_source  # noqa: E402
from xft_core.hooks.manager import collect  # noqa: E402

ROWS = {
    (lang, split): [{"text": f"{lang} {split} {word}", "label": label}
                    for word, label in (("good", "pos"), ("bad", "neg"), ("fine", "pos"))][: 3 if split == "train" else 2]
    for lang in ("en", "de") for split in ("train", "dev")
}


@pytest.fixture
def dpm(pm):
    pm.register(xft_datasets, name="xft_datasets")
    return pm


def rows_of(data, split: str, language: str) -> list[dict]:
    part = data.get(split, language)
    return part.rows if part else []


def assert_same(data, expected=ROWS) -> None:
    assert {(lang, split) for split in data.splits for lang in data.splits[split]} == set(expected)
    for (language, split), rows in expected.items():
        assert rows_of(data, split, language) == rows


def load(dpm, path, **data) -> object:
    return dataset_from_config(DataConfig(path=str(path), **data), dpm)


def with_language(rows_by_part=ROWS, *, split_column: bool = False) -> list[dict]:
    return [{**row, "language": lang, **({"split": split} if split_column else {})}
            for (lang, split), rows in rows_by_part.items() for row in rows]


# ------------------------------------------------------------------------------------------------ parquet
def test_a_folder_of_lang_split_parquet_files_reads_like_jsonl_files(dpm, tmp_path):
    for (lang, split), rows in ROWS.items():
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{lang}.{split}.parquet")
    data = load(dpm, tmp_path)
    assert_same(data)
    assert data.get("train", "de").where[0] == (str(tmp_path / "de.train.parquet"), 1)


def test_one_parquet_file_with_language_and_split_columns(dpm, tmp_path):
    file = tmp_path / "all.parquet"
    pq.write_table(pa.Table.from_pylist(with_language(split_column=True)), file)
    assert_same(load(dpm, file))
    pq.write_table(pa.Table.from_pylist(with_language({k: v for k, v in ROWS.items() if k[1] == "train"})), file)
    data = load(dpm, file)  # no split column: every row is a training row, as with one JSONL file
    assert sorted(data.splits) == ["train"] and rows_of(data, "train", "en") == ROWS["en", "train"]


def test_a_renamed_language_column_is_read_with_data_language_field(dpm, tmp_path):
    rows = [{"text": r["text"], "label": r["label"], "lang": r["language"]} for r in with_language()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    data = load(dpm, tmp_path, language_field="lang")
    assert rows_of(data, "train", "de") == ROWS["de", "train"] + ROWS["de", "dev"]


def test_a_missing_language_column_names_the_columns_present(dpm, tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS["en", "train"]), tmp_path / "all.parquet")
    with pytest.raises(DataError, match=r"all.parquet: no language column .language. \(columns: text, label\)"):
        load(dpm, tmp_path / "all.parquet")


def test_a_file_that_is_no_parquet_is_a_data_error_naming_it(dpm, tmp_path):
    (tmp_path / "en.train.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="en.train.parquet: not a readable Parquet file"):
        load(dpm, tmp_path)


def test_an_empty_parquet_file_or_table_is_a_data_warning_like_an_empty_jsonl(dpm, tmp_path):
    """A 0-byte .parquet was an error, an empty table a bare UserWarning; both now read as the empty JSONL does."""
    from xft_core.data.readers import DataWarning

    for (lang, split), rows in ROWS.items():
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{lang}.{split}.parquet")
    (tmp_path / "fr.train.parquet").write_bytes(b"")
    pq.write_table(pa.Table.from_pylist([], schema=pa.schema([("text", pa.string()), ("label", pa.string())])),
                   tmp_path / "it.train.parquet")
    with pytest.warns(DataWarning) as caught:
        data = load(dpm, tmp_path)
    messages = [str(w.message) for w in caught]
    assert f"{tmp_path / 'fr.train.parquet'}: no rows (an empty file), so it adds nothing" in messages
    assert f"{tmp_path / 'it.train.parquet'}: no rows (an empty table), so it adds nothing" in messages
    assert_same(data)


# ------------------------------------------------------------------------------------------- save_to_disk
def test_a_saved_datasetdict_with_a_language_column(dpm, tmp_path):
    by_split = {split: with_language({k: v for k, v in ROWS.items() if k[1] == split}) for split in ("train", "dev")}
    datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s, rows in by_split.items()}).save_to_disk(tmp_path / "saved")
    data = load(dpm, tmp_path / "saved")
    assert_same(data)
    assert data.get("dev", "en").where[1] == (f"{tmp_path / 'saved'} [dev]", 2)


def test_a_saved_dataset_with_a_split_column(dpm, tmp_path):
    datasets.Dataset.from_list(with_language(split_column=True)).save_to_disk(tmp_path / "one")
    assert_same(load(dpm, tmp_path / "one"))


def test_an_unknown_train_split_names_the_splits_present(dpm, tmp_path):
    rows = with_language({k: v for k, v in ROWS.items() if k[1] == "train"})
    datasets.DatasetDict({"training": datasets.Dataset.from_list(rows), "validation": datasets.Dataset.from_list(rows)}
                         ).save_to_disk(tmp_path / "saved")
    with pytest.raises(DataError, match=r"no 'train' split .*Splits present: training, validation; .*data.train_split"):
        load(dpm, tmp_path / "saved")
    with pytest.warns(UserWarning, match="set data.dev_split: validation"):
        data = load(dpm, tmp_path / "saved", train_split="training")
    assert rows_of(data, "training", "en") == ROWS["en", "train"]


# ------------------------------------------------------------------------------------------------- the Hub
def fake_hub_cache(cache: Path, identifier: str, configs: dict[str, dict[str, list[dict]]], work: Path) -> None:
    """What `load_dataset(identifier, config)` leaves in the datasets cache, built offline: each config prepared by
    the packaged Parquet builder under `<namespace>___<name>/<config>/<version>/<hash>`."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    namespace, name = identifier.split("/")
    folder = cache / f"{namespace}___{name}"
    for config, splits in configs.items():
        files = {}
        for split, rows in splits.items():
            files[split] = [str(work / f"{config}.{split}.parquet")]
            pq.write_table(pa.Table.from_pylist(rows), files[split][0])
        Parquet(cache_dir=str(cache), dataset_name=f"{namespace}___{name}", config_name=config, data_files=files,
                hash="0123abcd").download_and_prepare()
        built = next(p for p in glob.glob(str(folder / f"{config}*")) if os.path.isdir(p))
        if built != str(folder / config):
            shutil.move(built, folder / config)
        for arrow in (folder / config).glob(f"*/*/{namespace}___{name}-*.arrow"):
            arrow.rename(arrow.with_name(arrow.name.replace(f"{namespace}___{name}-", f"{name}-")))
        info = json.loads(next((folder / config).glob("*/*/dataset_info.json")).read_text())
        assert info["config_name"] == config


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    per_language = {lang: {split: ROWS[lang, split] for split in ("train", "dev")} for lang in ("en", "de")}
    per_language["fr"] = {"train": ROWS["en", "train"]}
    fake_hub_cache(cache, "xft-test/reviews", per_language, work)
    columns = {"default": {split: with_language({k: v for k, v in ROWS.items() if k[1] == split}) for split in ("train", "dev")}}
    fake_hub_cache(cache, "xft-test/mixed", columns, work)
    return cache


def test_hub_per_language_configs_chosen_by_data_languages(dpm, hub_cache):
    assert_same(load(dpm, "hf://xft-test/reviews", languages=["en", "de"]))
    assert_same(load(dpm, "hub:xft-test/reviews", train_languages=["en"], eval_languages=["de"]))
    every = load(dpm, "hf://datasets/xft-test/reviews")  # nothing asked: every cached config is a language
    assert every.languages("train") == ["de", "en", "fr"]
    assert every.get("dev", "de").where[0] == ("hf://datasets/xft-test/reviews [de/dev]", 1)


def test_hub_one_config_with_a_language_column(dpm, hub_cache):
    assert_same(load(dpm, "hf://xft-test/mixed"))


def test_hub_never_downloads_an_uncached_dataset_and_names_the_cache(dpm, hub_cache):
    with pytest.raises(DataError, match=rf"'xft-test/absent' is not in the local datasets cache \({hub_cache}\).*"
                                        r"Datasets in the cache: xft-test/mixed, xft-test/reviews"):
        load(dpm, "hf://xft-test/absent")


def test_hub_languages_that_are_not_cached_configs_name_the_configs(dpm, hub_cache):
    with pytest.raises(DataError, match=r"languages ru are not cached configs \(cached configs: de, en, fr\)"):
        load(dpm, "hf://xft-test/reviews", languages=["en", "ru"])
    with pytest.raises(DataError, match="not a Hub dataset reference"):
        load(dpm, "hf://not a valid id")


# ------------------------------------------------------------------------------------ fallback and plumbing
def test_the_file_reader_stays_the_fallback(dpm, tmp_path, sentiment_data):
    assert find_source(str(sentiment_data), dpm) is None
    shutil.copytree(sentiment_data, tmp_path / "mixed")
    pq.write_table(pa.Table.from_pylist(ROWS["en", "train"]), tmp_path / "mixed" / "fr.train.parquet")
    assert find_source(str(tmp_path / "mixed"), dpm) is None  # JSONL files present: read as today
    assert {name: p.spec.priority for name, p in collect(dpm, "data_sources").items()} == {
        "hub": 30, "saved-dataset": 20, "parquet": 10}


def test_a_hub_reference_in_yaml_is_not_taken_for_a_relative_path(tmp_path):
    from xft_core.config.load import load_config

    (tmp_path / "run.yaml").write_text("model: m\ndata: {path: 'hf://org/data', languages: [de]}\n")
    config = load_config(tmp_path / "run.yaml")
    assert config.data.path == "hf://org/data" and config.data.languages == ["de"]
    with pytest.raises(ConfigError, match="data.languages"):
        load_config(tmp_path / "run.yaml", overrides={"data": {"languages": {"de": 1}}})


def test_train_reads_parquet_end_to_end(dpm, tiny_model, tmp_path):
    from xft_core import train

    data = tmp_path / "pq"
    data.mkdir()
    for (lang, split), rows in ROWS.items():
        pq.write_table(pa.Table.from_pylist(rows * 4), data / f"{lang}.{split}.parquet")
    config = tiny_config(tiny_model("bert"), data, tmp_path / "runs", training={"max_steps": 2, "batch_size": 4})
    run = train(config, pm=dpm, progress=False)
    assert sorted(run.train) == ["de", "en"] and len(run.train["de"]) == 12
    assert run.train["de"].rows[:3] == ROWS["de", "train"]
    assert (run.paths.root / "run.json").is_file()


def test_a_source_that_breaks_is_a_plugin_error_naming_it(dpm, tmp_path):
    from xft_core.hooks import DataSourceSpec, PluginError, hookimpl

    class Broken:
        @hookimpl
        def xft_data_sources(self):
            yield DataSourceSpec(name="broken", matches=lambda ref: ref.startswith("broken:"), load=lambda request: 1 / 0)

    dpm.register(Broken(), name="broken-plugin")
    with pytest.raises(PluginError, match=r"Data source 'broken' \(plugin 'broken-plugin'\) failed to read 'broken:x'"):
        load(dpm, "broken:x")


def test_a_path_on_its_own_is_read_by_its_source_without_a_train_split(dpm, tmp_path):
    rows = with_language({k: v for k, v in ROWS.items() if k[1] == "dev"})
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "test-only")
    data = dataset_from_path(tmp_path / "test-only", dpm)  # `xft eval --data`, `xft data check PATH`
    assert rows_of(data, "test", "de") == ROWS["de", "dev"]
