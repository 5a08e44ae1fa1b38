"""Typed run configuration: YAML plus `--set key=value` overrides, validated with errors that name the key."""

from xft_core.config.load import build_dataclass, build_options, deep_merge, load_config, parse_overrides, save_config
from xft_core.config.schema import (
    CalibrationConfig,
    ConfigError,
    DataConfig,
    RunConfig,
    SelfTrainingConfig,
    TrainingConfig,
)

__all__ = ["CalibrationConfig", "ConfigError", "DataConfig", "RunConfig", "SelfTrainingConfig", "TrainingConfig",
           "build_dataclass", "build_options", "deep_merge", "load_config", "parse_overrides", "save_config"]
