"""Run configuration: errors that name the key (and file and line) and list what is valid, typed `--set`
overrides, data paths relative to the YAML file, and a saved config that loads back to the same run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from xft_core.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TrainingConfig,
    build_options,
    load_config,
    parse_overrides,
    save_config,
)
from xft_core.hooks.manager import get_spec

MINIMAL = {"data": {"path": "x"}}


def write_yaml(path: Path, mapping: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    return path


def error_of(source, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return str(info.value)


# ------------------------------------------------------------------------------------------- bad keys
def test_unknown_top_level_key_is_named_with_the_valid_keys():
    message = error_of({**MINIMAL, "modle": "gemma3-270m"})
    assert "'modle'" in message
    valid = message.split("Valid keys", 1)[1]
    for field in dataclasses.fields(RunConfig):
        assert field.name in valid, field.name


def test_unknown_nested_key_is_named_with_its_section_and_valid_keys():
    message = error_of({**MINIMAL, "training": {"max_stpes": 10}})
    assert "'training.max_stpes'" in message
    valid = message.split("Valid keys", 1)[1]
    assert "training" in valid
    for field in dataclasses.fields(TrainingConfig):
        assert field.name in valid, field.name


def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"data": {"path": "d", "pth": "e"}})
    message = error_of(path)
    assert str(path) in message and "'data.pth'" in message and "path" in message.split("Valid keys", 1)[1]


def test_bad_literal_lists_the_valid_choices():
    message = error_of({**MINIMAL, "adapters": "both"})
    assert "adapters" in message and "'both'" in message
    assert "single" in message and "per_language" in message


def test_bad_nested_literal_lists_the_valid_choices():
    message = error_of({**MINIMAL, "training": {"lr_scheduler": "cosine_with_restarts"}})
    assert "training.lr_scheduler" in message
    for choice in ("linear", "cosine", "constant"):
        assert choice in message


def test_wrong_type_names_the_key():
    message = error_of({**MINIMAL, "training": {"batch_size": "eight"}})
    assert "training.batch_size" in message and "'eight'" in message and "integer" in message


@pytest.mark.parametrize(
    "training,key",
    [({"batch_size": 0}, "training.batch_size"), ({"warmup_ratio": 1.0}, "training.warmup_ratio"),
     ({"learning_rate": -1}, "training.learning_rate"), ({"cpu": "maybe"}, "training.cpu")],
)
def test_out_of_range_values_name_the_key(training, key):
    assert key in error_of({**MINIMAL, "training": training})


def test_missing_data_section_says_how_to_set_it():
    message = error_of({"name": "x"})
    assert "data" in message and "path" in message


# ------------------------------------------------------------------------------------------- overrides
def test_parse_overrides_builds_nested_typed_values():
    overrides = parse_overrides(["training.max_steps=5", "strategy_options.r=4", "training.cpu=true", "name=exp-1"])
    assert overrides == {"training": {"max_steps": 5, "cpu": True}, "strategy_options": {"r": 4}, "name": "exp-1"}
    assert type(overrides["training"]["max_steps"]) is int and type(overrides["strategy_options"]["r"]) is int


def test_overrides_apply_on_top_of_a_yaml_file_and_are_typed(tmp_path):
    path = write_yaml(
        tmp_path / "run.yaml",
        {"data": {"path": "d"}, "strategy_options": {"r": 16, "alpha": 32},
         "training": {"max_steps": 100, "batch_size": 4, "learning_rate": 0.001}},
    )
    config = load_config(path, parse_overrides(["training.max_steps=5", "strategy_options.r=4", "training.learning_rate=3e-4"]))
    assert config.training.max_steps == 5 and type(config.training.max_steps) is int
    assert config.strategy_options == {"r": 4, "alpha": 32}  # merged, not replaced
    assert type(config.strategy_options["r"]) is int
    assert config.training.batch_size == 4  # keys not overridden keep the file's value
    assert config.training.learning_rate == pytest.approx(3e-4)  # YAML reads '3e-4' as a string; it is coerced
    assert type(config.training.learning_rate) is float


def test_override_with_a_bad_value_names_the_key(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"data": {"path": "d"}})
    message = error_of(path, parse_overrides(["training.max_steps=many"]))
    assert "training.max_steps" in message and "many" in message


def test_override_without_equals_sign_is_explained():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["training.max_steps"])


# ----------------------------------------------------------------------------------------------- files
def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: m\ndata: {path: d\nstrategy: lora\n", encoding="utf-8")
    # PyYAML reports the first token it cannot use: the ':' of line 4 inside the unclosed flow mapping
    message = error_of(path)
    assert str(path) in message and "line 4" in message


def test_yaml_tab_indentation_names_the_line(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("name: x\ndata:\n\tpath: d\n", encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 3" in message


def test_missing_config_file_is_named(tmp_path):
    message = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    assert str(path) in error_of(path)


def test_relative_data_path_resolves_against_the_yaml_folder(tmp_path, monkeypatch):
    path = write_yaml(tmp_path / "configs" / "run.yaml", {"data": {"path": "../data/reviews"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    config = load_config(path)
    assert Path(config.data.path) == (tmp_path / "data" / "reviews").resolve()
    assert Path(config.data.path).is_absolute()


def test_relative_data_files_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    path = write_yaml(tmp_path / "configs" / "run.yaml", {"data": {"files": {"train": {"en": "en.jsonl", "de": "../de.jsonl"}}}})
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert Path(config.data.files["train"]["en"]) == (tmp_path / "configs" / "en.jsonl").resolve()
    assert Path(config.data.files["train"]["de"]) == (tmp_path / "de.jsonl").resolve()


def test_absolute_data_path_is_kept(tmp_path):
    target = (tmp_path / "abs-data").resolve()
    path = write_yaml(tmp_path / "cfg" / "run.yaml", {"data": {"path": str(target)}})
    assert load_config(path).data.path == str(target)


def test_mapping_relative_path_is_not_rewritten():
    assert load_config({"data": {"path": "x"}}).data.path == "x"


# ------------------------------------------------------------------------------------------- round trip
def test_saved_config_reloads_to_an_equal_config(tmp_path):
    source = write_yaml(
        tmp_path / "run.yaml",
        {
            "name": "round-trip",
            "model": "some/model",
            "strategy": "lora",
            "strategy_options": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "adapters": "per_language",
            "sampler": "unimax",
            "sampler_options": {"budget": 1000, "max_epochs": 2.5},
            "task_options": {"labels": ["neg", "pos"]},
            "data": {"path": "data", "train_languages": ["en", "de"], "max_train_examples": 50},
            "training": {"max_steps": 7, "learning_rate": 1e-3, "lr_scheduler": "cosine", "precision": "no",
                         "eval_every": 2, "load_best_at_end": True},
            "data_check": False,
        },
    )
    original = load_config(source)
    saved = tmp_path / "run-folder" / "config.yaml"
    save_config(original, saved)
    reloaded = load_config(saved)
    assert reloaded == original
    assert reloaded.to_dict() == original.to_dict()


def test_saved_config_from_a_mapping_still_points_at_the_same_data(tmp_path, monkeypatch):
    """A config given as a mapping (Python API, --set data.path=...) holds a path relative to the working
    directory; the copy saved in the run folder must point at the same data when loaded again."""
    monkeypatch.chdir(tmp_path)
    original = load_config({"data": {"path": "data/reviews"}})
    saved = tmp_path / "runs" / "run" / "config.yaml"
    save_config(original, saved)
    reloaded = load_config(saved)
    assert Path(reloaded.data.path).resolve() == (tmp_path / "data" / "reviews").resolve()
    assert dataclasses.replace(reloaded, data=original.data) == original


def test_load_config_accepts_a_run_config_and_overrides():
    base = load_config(MINIMAL)
    changed = load_config(base, {"training": {"seed": 3}})
    assert changed.training.seed == 3 and base.training.seed == 42
    assert dataclasses.replace(changed, training=base.training) == base


def test_data_section_needs_a_path_or_files():
    with pytest.raises(ConfigError, match="data.path"):
        DataConfig()


# ------------------------------------------------------------------------------------------ plugin options
def test_lora_rank_zero_names_strategy_options(pm):
    spec = get_spec(pm, "strategies", "lora", config_key="strategy")
    with pytest.raises(ConfigError) as info:
        build_options(spec.options, {"r": 0}, key="strategy_options")
    message = str(info.value)
    assert "strategy_options" in message and "r must be a positive integer" in message


def test_unknown_lora_option_lists_the_valid_ones(pm):
    spec = get_spec(pm, "strategies", "lora", config_key="strategy")
    with pytest.raises(ConfigError) as info:
        build_options(spec.options, {"rank": 8}, key="strategy_options")
    message = str(info.value)
    assert "strategy_options.rank" in message
    for name in ("r", "alpha", "dropout", "target_modules"):
        assert name in message.split("Valid keys", 1)[1]


def test_lora_options_are_typed_from_strings(pm):
    spec = get_spec(pm, "strategies", "lora", config_key="strategy")
    options = build_options(spec.options, {"r": "4", "alpha": "8", "target_modules": "q_proj, v_proj"}, key="strategy_options")
    assert options.r == 4 and type(options.r) is int
    assert options.alpha == 8.0
    assert options.target_modules == ["q_proj", "v_proj"]


def test_plugin_option_errors_surface_through_resolve_plugins(pm):
    from xft_core.training import resolve_plugins

    config = load_config({**MINIMAL, "task": "sequence-classification", "strategy_options": {"r": 0}})
    with pytest.raises(ConfigError, match="strategy_options"):
        resolve_plugins(config, pm)
    config = load_config({**MINIMAL, "task": "sequence-classification", "sampler": "temperature",
                          "sampler_options": {"alpha": 2}})
    with pytest.raises(ConfigError, match="sampler_options.*alpha"):
        resolve_plugins(config, pm)

