"""Typed run configuration: YAML plus `--set key=value` overrides, validated with errors that name the key."""

from xft_core.config.build import *  # noqa: F401,F403
from xft_core.config.build import (  # noqa: F401
    ConfigError, DataConfig, RunConfig, TrainingConfig, build_dataclass, build_options, deep_merge, load_config,
    parse_overrides, save_config,
)
