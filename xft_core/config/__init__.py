"""Typed run configuration: YAML plus `--set key=value` overrides, validated with errors that name the key."""

from xft_core.config.load import build_dataclass, build_options, deep_merge, load_config, parse_overrides, save_config
from xft_core.config.schema import ConfigError, DataConfig, RunConfig, TrainingConfig

__all__ = ["ConfigError", "DataConfig", "RunConfig", "TrainingConfig", "build_dataclass", "build_options", "deep_merge",
           "load_config", "parse_overrides", "save_config"]
