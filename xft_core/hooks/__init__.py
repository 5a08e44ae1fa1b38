"""The API that plugins import: hook markers, descriptors, protocols and the helpers a plugin needs.

Built-in plugins use nothing else from xft_core (import-linter checks it), so a third-party plugin can do
whatever a built-in one does.
"""

from xft_core.hooks.descriptors import (
    KINDS,
    SINGULAR,
    CommandSpec,
    DataPart,
    DataRequest,
    DataSourceError,
    DataSourceSpec,
    MetricSpec,
    ModelSourceSpec,
    NoOptions,
    QuantizerSpec,
    RecipeSpec,
    RecipeTask,
    SamplerSpec,
    StrategySpec,
    TaskHeadSpec,
)
from xft_core.hooks.manager import PluginConflictError, PluginError
from xft_core.hooks.protocols import (
    BASE_ADAPTER,
    ROW_LANGUAGE,
    AdaptsToData,
    Combining,
    LanguageSampler,
    ModelKind,
    RowFields,
    Strategy,
    TaskHead,
)
from xft_core.hooks.sampling import ProbabilitySampler, proportions
from xft_core.hooks.spec import hookimpl, hookspec
from xft_core.util.errors import DataWarning, UserError

__all__ = [
    "BASE_ADAPTER", "KINDS", "ROW_LANGUAGE", "SINGULAR", "AdaptsToData", "Combining", "CommandSpec", "DataPart",
    "DataRequest", "DataSourceError", "DataSourceSpec", "DataWarning", "LanguageSampler", "MetricSpec", "ModelKind",
    "ModelSourceSpec", "NoOptions", "PluginConflictError", "PluginError", "ProbabilitySampler", "QuantizerSpec",
    "RecipeSpec", "RecipeTask", "RowFields", "SamplerSpec", "Strategy", "StrategySpec", "TaskHead", "TaskHeadSpec",
    "UserError", "hookimpl", "hookspec", "proportions",
]
