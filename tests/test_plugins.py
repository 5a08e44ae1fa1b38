"""The plugin system: third-party descriptors, name conflicts, unknown names, discovery controls, hook
validation and `xft plugins`. Every test builds its own manager; plugin classes are defined in the test."""

from __future__ import annotations

from dataclasses import dataclass

import pluggy
import pytest

from xft_core.config import load_config
from xft_core.hooks import manager as xft_plugins
from xft_core.hooks.descriptors import SamplerSpec, StrategySpec
from xft_core.hooks.manager import PluginConflictError, PluginError, collect, get_spec, make_plugin_manager
from xft_core.hooks.sampling import ProbabilitySampler
from xft_core.hooks.spec import hookimpl
from xft_core.training import resolve_plugins

BUILTINS = ("xft_classification", "xft_full", "xft_lora", "xft_metrics", "xft_samplers", "xft_sources")


@pytest.fixture
def clean_env(monkeypatch):
    """No discovery controls from the outer environment leak into a test."""
    monkeypatch.delenv("XFT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("XFT_BLOCK_PLUGINS", raising=False)
    return monkeypatch


# ------------------------------------------------------------------------------------ third-party plugins
def test_third_party_strategy_and_sampler_are_collected_and_resolved(pm):
    @dataclass(frozen=True, kw_only=True)
    class BitFitOptions:
        train_layer_norm: bool = False

    class BitFit:
        def __init__(self, options):
            self.options = options

    class EveryOther(ProbabilitySampler):
        pass

    class ThirdParty:
        @hookimpl
        def xft_strategies(self):
            yield StrategySpec(name="bitfit", options=BitFitOptions, build=BitFit, description="biases only")

        @hookimpl
        def xft_samplers(self):
            yield SamplerSpec(name="every-other", build=lambda sizes, options, seed: EveryOther(dict(sizes), seed))

    pm.register(ThirdParty(), name="third-party")

    strategies = collect(pm, "strategies")
    samplers = collect(pm, "samplers")
    assert {"bitfit", "lora", "full"} <= set(strategies)
    assert {"every-other", "temperature"} <= set(samplers)
    assert strategies["bitfit"].plugin == "third-party"
    assert samplers["every-other"].plugin == "third-party"
    assert get_spec(pm, "strategies", "bitfit", config_key="strategy") == strategies["bitfit"].spec
    found_sampler = get_spec(pm, "samplers", "every-other", config_key="sampler")
    assert isinstance(found_sampler, SamplerSpec) and found_sampler.name == "every-other"

    config = load_config(
        {
            "task": "sequence-classification",
            "strategy": "bitfit",
            "strategy_options": {"train_layer_norm": "yes"},
            "sampler": "every-other",
            "data": {"path": "x"},
        }
    )
    strategy_spec, strategy, sampler_spec, sampler_options, head = resolve_plugins(config, pm)
    assert strategy_spec.name == "bitfit"
    assert isinstance(strategy, BitFit)
    assert strategy.options == BitFitOptions(train_layer_norm=True)  # options typed from the plugin's dataclass
    assert sampler_spec.name == "every-other"
    sampler = sampler_spec.build({"en": 3, "de": 1}, sampler_options, 0)
    assert isinstance(sampler, EveryOther) and sampler.languages == ["de", "en"]
    assert head.required_fields == ("text", "label")  # the default task head came along


def test_third_party_yielding_the_wrong_descriptor_is_named(pm):
    class Confused:
        @hookimpl
        def xft_samplers(self):
            yield StrategySpec(name="oops", build=lambda options: None)

    pm.register(Confused(), name="confused")
    with pytest.raises(PluginError, match="confused.*StrategySpec.*SamplerSpec"):
        collect(pm, "samplers")


def test_duplicate_strategy_name_names_both_providers(pm):
    @dataclass(frozen=True, kw_only=True)
    class DupOptions:
        pass

    class Dup:
        @hookimpl
        def xft_strategies(self):
            yield StrategySpec(name="lora", options=DupOptions, build=lambda options: None)

    pm.register(Dup(), name="dup")
    with pytest.raises(PluginConflictError, match="lora.*dup") as info:
        collect(pm, "strategies")
    message = str(info.value)
    assert "xft_lora" in message and "'dup'" in message
    # providers are named in registration order and the newcomer is the one suggested for blocking
    assert message.index("xft_lora") < message.index("'dup'")
    assert "XFT_BLOCK_PLUGINS=dup" in message
    with pytest.raises(PluginConflictError):
        get_spec(pm, "strategies", "full", config_key="strategy")  # any lookup of the kind fails loudly


def test_duplicate_within_installed_plugins_names_the_distribution(clean_env):
    pm = make_plugin_manager()

    class Dup:
        @hookimpl
        def xft_samplers(self):
            yield SamplerSpec(name="uniform", build=lambda sizes, options, seed: None)

    pm.register(Dup(), name="dup")
    with pytest.raises(PluginConflictError) as info:
        collect(pm, "samplers")
    message = str(info.value)
    assert "xft_samplers" in message and "dup" in message and "xft 0.1" in message


def test_unknown_strategy_lists_available_names_and_the_config_key(pm):
    with pytest.raises(PluginError) as info:
        get_spec(pm, "strategies", "qlora", config_key="strategy")
    message = str(info.value)
    assert "'qlora'" in message
    assert "config key: strategy" in message
    assert "Available: full, lora." in message
    assert "xft plugins" in message


def test_unknown_sampler_in_a_config_fails_in_resolve_plugins(pm):
    config = load_config({"sampler": "temprature", "data": {"path": "x"}})
    with pytest.raises(PluginError) as info:
        resolve_plugins(config, pm)
    message = str(info.value)
    assert "temprature" in message and "config key: sampler" in message
    for name in ("proportional", "round_robin", "temperature", "uniform", "unimax"):
        assert name in message


# ------------------------------------------------------------------------------------- discovery controls
def test_autoload_registers_every_builtin_entry_point(clean_env):
    pm = make_plugin_manager()
    for name in BUILTINS:
        assert pm.has_plugin(name), name
    assert {"full", "lora"} <= set(collect(pm, "strategies"))


def test_blocked_plugin_is_not_loaded(clean_env):
    pm = make_plugin_manager(blocked=["xft_lora"])
    strategies = collect(pm, "strategies")
    assert "lora" not in strategies
    assert "full" in strategies
    assert pm.is_blocked("xft_lora")
    with pytest.raises(PluginError, match="Unknown strategy 'lora'.*Available: full"):
        get_spec(pm, "strategies", "lora", config_key="strategy")


def test_block_plugins_env_var_blocks_by_name(clean_env):
    clean_env.setenv("XFT_BLOCK_PLUGINS", " xft_lora , xft_metrics")
    pm = make_plugin_manager()
    assert "lora" not in collect(pm, "strategies")
    assert "full" in collect(pm, "strategies")
    assert not {"macro_f1", "accuracy", "chrf"} & set(collect(pm, "metrics")), "xft_metrics is blocked"
    assert "temperature" in collect(pm, "samplers")


def test_disable_autoload_env_var_yields_an_empty_manager(clean_env):
    clean_env.setenv("XFT_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = make_plugin_manager()
    assert collect(pm, "strategies") == {}
    assert collect(pm, "samplers") == {}
    with pytest.raises(PluginError, match="none installed"):
        get_spec(pm, "strategies", "lora", config_key="strategy")


def test_explicit_autoload_argument_wins_over_the_env_var(clean_env):
    clean_env.setenv("XFT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "lora" in collect(make_plugin_manager(autoload=True), "strategies")


# ----------------------------------------------------------------------------------------- validation
def test_misspelled_hook_name_fails_check_pending():
    pm = make_plugin_manager(autoload=False)

    class Typo:
        @hookimpl
        def xft_strategys(self):
            yield StrategySpec(name="typo", build=lambda options: None)

    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="xft_strategys"):
        pm.check_pending()


def test_hook_with_a_wrong_argument_is_rejected_at_registration():
    pm = make_plugin_manager(autoload=False)

    class WrongArgs:
        @hookimpl
        def xft_after_step(self, run, step, loss):
            pass

    with pytest.raises(pluggy.PluginValidationError, match="loss"):
        pm.register(WrongArgs(), name="wrong-args")


# ------------------------------------------------------------------------------------------------ CLI
def test_xft_plugins_lists_every_builtin_and_its_distribution(clean_env, capsys):
    from xft_core.cli.main import main

    clean_env.setattr(xft_plugins, "_default", None)  # the process-wide manager is rebuilt for this test
    clean_env.setenv("COLUMNS", "250")  # a wide table, so no plugin name is wrapped
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in BUILTINS:
        row = next((line for line in lines if f" {name} " in line), None)
        assert row is not None, f"{name} missing from:\n{out}"
        assert " xft " in row, row  # the distribution column
    assert "strategy: lora" in out and "sampler: unimax" in out


def test_xft_plugins_verbose_describes_strategies(clean_env, capsys):
    from xft_core.cli.main import main

    clean_env.setattr(xft_plugins, "_default", None)
    clean_env.setenv("COLUMNS", "250")
    assert main(["plugins", "-v"]) == 0
    out = capsys.readouterr().out
    for kind_and_name in ("strategy lora:", "strategy full:", "sampler temperature:", "task head sequence-classification:"):
        assert kind_and_name in out


def test_every_built_in_task_head_declares_a_model_kind_of_the_api():
    """`ModelKind` (hooks) names every kind a built-in head builds, so a strategy can map them all."""
    import typing

    from xft_core.config import build_options
    from xft_core.hooks import ModelKind

    kinds = set(typing.get_args(ModelKind))
    declared = {}
    for name, provided in collect(make_plugin_manager(), "task_heads").items():
        try:
            head = provided.spec.build(build_options(provided.spec.options, {}, key="task_options"))
        except Exception:  # a head whose options have no defaults is not built here
            continue
        declared[name] = head.model_kind
    assert {"sequence-classification", "prompt-classification", "token-classification"} <= set(declared.values())
    assert not {name: kind for name, kind in declared.items() if kind not in kinds}, declared


def test_duplicate_command_hint_names_the_third_party_plugin_not_xft_train(monkeypatch, capsys):
    """A third-party plugin loads (as an entry point) before xft's own commands register; blocking the newcomer
    would block `xft_core.cli.train` and hand `xft train` to the plugin. The hint names the third party."""
    from xft_core.cli.main import main
    from xft_core.hooks import CommandSpec
    from xft_core.hooks import manager as xft_plugins

    class ThirdParty:
        @hookimpl
        def xft_commands(self):
            yield CommandSpec(name="train", register=lambda sub: None, description="my own train")

    fresh = xft_plugins.make_plugin_manager(autoload=False)
    fresh.register(ThirdParty(), name="xft-mytrain")
    fresh.distributions["xft-mytrain"] = ("xft-mytrain", "0.1")
    monkeypatch.setattr(xft_plugins, "_default", fresh)
    assert main(["plugins"]) == 2
    line = capsys.readouterr().err
    assert "Duplicate command name 'train'" in line and "XFT_BLOCK_PLUGINS=xft-mytrain" in line
    assert "XFT_BLOCK_PLUGINS=xft_core.cli.train" not in line
