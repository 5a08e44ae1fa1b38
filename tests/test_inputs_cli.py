"""The CLI never shows a raw traceback for something the user can fix: one `error:` line, exit 2, naming the file,
the `--set` value, or the plugin and its distribution; a bug prints one line asking to report it (exit 1), and
XFT_DEBUG=1 adds the traceback. Messages are the same at any terminal width."""

from __future__ import annotations

import importlib
import json
import types
import warnings
from pathlib import Path

import pytest
import yaml

from xft_core.cli.main import main
from xft_core.config import ConfigError, load_config
from xft_core.config.load import ConfigWarning, check_max_length, position_limit
from xft_core.hooks import manager as xft_plugins
from xft_core.hooks.descriptors import TaskHeadSpec
from xft_core.hooks.manager import PluginError, get_spec, make_plugin_manager
from xft_core.hooks.spec import hookimpl
from xft_core.util.errors import UserError

ROWS = [{"text": "good phone", "label": "pos"}, {"text": "bad lamp", "label": "neg"}]


@pytest.fixture
def cli_pm(monkeypatch, pm):
    """The process-wide manager the CLI uses: the built-ins registered by hand, nothing from the environment."""
    monkeypatch.delenv("XFT_DEBUG", raising=False)
    monkeypatch.setattr(xft_plugins, "_default", pm)
    return pm


def write_config(tmp_path: Path, rows: list | None = None, **over) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    if rows is not None:
        (folder / "en.train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {"name": "t", "output_dir": str(tmp_path / "runs"), "model": str(tmp_path / "no-model"), "strategy": "full",
              "task": "sequence-classification",
              "sampler": "uniform", "data": {"path": str(folder)}, "data_check": False, "training": {"precision": "no"}, **over}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------------- data
def test_data_that_is_not_utf8_is_one_error_naming_the_file(tmp_path, cli_pm, capsys):
    config = write_config(tmp_path)
    bad = tmp_path / "data" / "en.train.jsonl"
    bad.write_bytes('{"text": "übel", "label": "neg"}\n'.encode("latin-1"))
    code, err = run(capsys, "train", config)
    line = one_error_line(err)
    assert code == 2 and str(bad) in line and "line 1" in line and "UTF-8" in line


def test_lone_surrogate_in_data_is_one_error(tmp_path, cli_pm, capsys):
    config = write_config(tmp_path)
    bad = tmp_path / "data" / "en.train.jsonl"
    bad.write_text('{"text": "a \\udc80 b", "label": "neg"}\n', encoding="utf-8")
    code, err = run(capsys, "train", config)
    line = one_error_line(err)
    assert code == 2 and str(bad) in line and "surrogate" in line and "\\udc80" in line


def test_data_warnings_print_as_warning_lines(tmp_path, cli_pm, capsys, monkeypatch):
    config = write_config(tmp_path, ROWS)
    (tmp_path / "data" / "en.dev.v2.jsonl").write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "30")
    code, err = run(capsys, "train", config)
    assert code == 2  # the model folder does not exist; the warning came before
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "en.dev.v2.jsonl" in warning[0] and "<language>.<split>.<ext>" in warning[0], err


# --------------------------------------------------------------------------------------------- config
def test_yaml_error_in_a_set_value_is_one_error_naming_the_value(tmp_path, cli_pm, capsys):
    code, err = run(capsys, "train", write_config(tmp_path, ROWS), "--set", "training.max_steps=[1")
    line = one_error_line(err)
    assert code == 2 and "--set 'training.max_steps=[1'" in line and "YAML" in line


def test_set_with_an_empty_key_part_is_one_error(tmp_path, cli_pm, capsys):
    code, err = run(capsys, "train", write_config(tmp_path, ROWS), "--set", "training..max_steps=3")
    assert code == 2 and "training..max_steps" in one_error_line(err)


def test_config_that_is_not_utf8_is_one_error(tmp_path, cli_pm, capsys):
    path = tmp_path / "run.yaml"
    path.write_bytes("name: übel\ndata: {path: d}\n".encode("latin-1"))
    code, err = run(capsys, "train", path)
    line = one_error_line(err)
    assert code == 2 and str(path) in line and "UTF-8" in line


def test_huge_number_for_a_float_key_is_a_config_error():
    with pytest.raises(ConfigError, match="training.learning_rate"):
        load_config({"data": {"path": "d"}, "training": {"learning_rate": 10**400}})


def test_nested_mapping_values_are_typed():
    with pytest.raises(ConfigError, match=r"data.files.train"):
        load_config({"data": {"files": {"train": ["a.jsonl"]}}})
    with pytest.raises(ConfigError, match=r"data.rows.train.en"):
        load_config({"data": {"rows": {"train": {"en": "not rows"}}}})


def test_data_path_that_is_not_a_string_in_a_yaml_file_is_a_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {path: 7, files: {train: {en: [x]}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


# ------------------------------------------------------------------------------------------ max_length
def test_position_limit_of_encoder_decoder_and_relative_models():
    assert position_limit(types.SimpleNamespace(max_position_embeddings=512, model_type="bert")) == 512
    assert position_limit(types.SimpleNamespace(max_position_embeddings=514, model_type="xlm-roberta", pad_token_id=1)) == 512
    assert position_limit(types.SimpleNamespace(text_config=types.SimpleNamespace(max_position_embeddings=32768))) == 32768
    assert position_limit(types.SimpleNamespace(model_type="t5")) is None
    with pytest.raises(ConfigError, match=r"training.max_length is 600.*at most 512 tokens.*max_position_embeddings"):
        check_max_length(600, types.SimpleNamespace(max_position_embeddings=512), key="training.max_length")


def test_max_length_beyond_rotary_positions_is_a_warning():
    """A RoPE decoder runs past its trained length (only worse): a warning, not an error."""
    rotary = types.SimpleNamespace(max_position_embeddings=128, rope_parameters={"rope_theta": 10000.0})
    with pytest.warns(ConfigWarning, match=r"training.max_length is 160.*at most 128 tokens.*rotary"):
        check_max_length(160, rotary, key="training.max_length")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_max_length(128, rotary, key="training.max_length")


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_max_length_beyond_the_model_positions_fails_before_training(tmp_path, cli_pm, capsys, tiny_model, family):
    config = write_config(tmp_path, ROWS, model=str(tiny_model(family)))
    code, err = run(capsys, "train", config, "--set", "training.max_length=129")
    line = one_error_line(err)
    assert code == 2 and "training.max_length is 129" in line and "at most 128 tokens" in line
    assert not (tmp_path / "runs" / "t" / "checkpoints").exists()


# -------------------------------------------------------------------------------------------- plugins
class Broken:
    """A plugin whose head fails in the ways a third-party plugin can."""

    def __init__(self, where: str, error: type[Exception] = ValueError):
        self.where, self.error = where, error

    @hookimpl
    def xft_task_heads(self):
        yield TaskHeadSpec(name="broken", build=self.build)

    def build(self, options):
        if self.where == "build":
            raise self.error("the head cannot be built")
        from xft_classification import ClassificationOptions, SequenceClassification

        head = SequenceClassification(ClassificationOptions())
        if self.where == "fit_labels":
            def fit_labels(rows):
                raise self.error("the labels could not be fitted")
            head.fit_labels = fit_labels
        return head


def test_plugin_build_error_names_the_plugin_and_its_distribution(pm):
    pm.register(Broken("build"), name="broken-plugin")
    pm.distributions["broken-plugin"] = ("xft-broken", "1.2.0")
    spec = get_spec(pm, "task_heads", "broken", config_key="task")
    with pytest.raises(PluginError) as info:
        spec.build(None)
    message = str(info.value)
    assert "'broken-plugin'" in message and "xft-broken 1.2.0" in message and "task head 'broken'" in message
    assert "ValueError: the head cannot be built" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_plugin_build_error_through_the_cli_is_one_error(tmp_path, cli_pm, capsys):
    cli_pm.register(Broken("build", RuntimeError), name="broken-plugin")
    code, err = run(capsys, "train", write_config(tmp_path, ROWS, task="broken"))
    line = one_error_line(err)
    assert code == 2 and "'broken-plugin'" in line and "registered in code" in line and "cannot be built" in line


@pytest.mark.parametrize("error", [ValueError, RuntimeError])
def test_error_raised_by_a_plugin_object_names_the_plugin(tmp_path, cli_pm, capsys, error):
    """A ValueError a plugin raises itself rejects a value (exit 2); a RuntimeError is a bug in that plugin (exit 1)."""
    cli_pm.register(Broken("fit_labels", error), name="broken-plugin")
    cli_pm.distributions["broken-plugin"] = ("xft-broken", "1.2.0")
    code, err = run(capsys, "train", write_config(tmp_path, ROWS, task="broken"))
    line = one_error_line(err)
    assert "plugin 'broken-plugin' (xft-broken 1.2.0)" in line
    assert f"{error.__name__}: the labels could not be fitted" in line and "XFT_DEBUG=1" in line
    if error is ValueError:
        assert code == 2 and "internal error" not in line
    else:
        assert code == 1 and "internal error" in line and "a bug in that plugin" in line and "report" in line


def test_value_error_of_a_library_call_inside_a_plugin_is_a_bug_of_that_plugin(tmp_path, cli_pm, capsys):
    """Only a `raise` in the plugin's own code reads as "fix your input"; `int('x')` failing there is a bug."""
    cli_pm.register(Broken("fit_labels", lambda message: int(message)), name="broken-plugin")
    code, err = run(capsys, "train", write_config(tmp_path, ROWS, task="broken"))
    line = one_error_line(err)
    assert code == 1 and "internal error, ValueError" in line and "plugin 'broken-plugin'" in line


def test_a_plugin_calling_sys_exit_is_an_error_naming_it(tmp_path, cli_pm, capsys):
    """SystemExit(0) from a plugin used to end `xft train` silently with exit 0."""
    cli_pm.register(Broken("fit_labels", lambda message: SystemExit(0)), name="broken-plugin")
    cli_pm.distributions["broken-plugin"] = ("xft-broken", "1.2.0")
    code, err = run(capsys, "train", write_config(tmp_path, ROWS, task="broken"))
    line = one_error_line(err)
    assert code == 1 and "plugin 'broken-plugin' (xft-broken 1.2.0)" in line and "SystemExit" in line
    assert "xft train" in line


def test_entry_point_that_fails_to_import_is_one_error(monkeypatch, capsys):
    class FailingEntryPoint:
        name, value = "xft_broken", "xft_broken:plugin"
        dist = types.SimpleNamespace(name="xft-broken", version="0.3")

        def load(self):
            raise ImportError("No module named 'missing_dependency'")

    monkeypatch.delenv("XFT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setattr(xft_plugins, "_default", None)
    monkeypatch.setattr(xft_plugins.metadata, "entry_points", lambda group: [FailingEntryPoint()])
    code, err = run(capsys, "plugins")
    line = one_error_line(err)
    assert code == 2 and "'xft_broken'" in line and "xft-broken" in line and "missing_dependency" in line


def test_make_plugin_manager_still_raises_plugin_error_for_broken_entry_points(monkeypatch):
    class FailingEntryPoint:
        name, value, dist = "xft_broken", "xft_broken", None

        def load(self):
            raise SyntaxError("bad plugin")

    monkeypatch.setattr(xft_plugins.metadata, "entry_points", lambda group: [FailingEntryPoint()])
    with pytest.raises(PluginError, match="xft_broken"):
        make_plugin_manager(autoload=True)


# ------------------------------------------------------------------------------------- other exceptions
def crash_in_data_loading(monkeypatch, error: Exception) -> None:
    prepare = importlib.import_module("xft_core.training.prepare")  # the package exports a function of that name

    def crash(*args, **kwargs):
        raise error

    monkeypatch.setattr(prepare, "dataset_from_config", crash)


@pytest.mark.parametrize("error", [ValueError("a value xft could not use"), RuntimeError("a value xft could not use")])
def test_value_and_runtime_errors_of_xft_itself_are_bugs_not_user_errors(tmp_path, cli_pm, capsys, monkeypatch, error):
    """Only errors raised for the user (UserError: config, data, package, plugin) exit 2; a ValueError or
    RuntimeError out of xft's own code is a bug, reported as one."""
    crash_in_data_loading(monkeypatch, error)
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    line = one_error_line(err)
    assert code == 1 and f"internal error, {type(error).__name__}: a value xft could not use" in line
    assert "a bug in xft" in line and "report" in line and "XFT_DEBUG=1" in line


@pytest.mark.parametrize("error", [ConfigError("key x: bad"), UserError("the value of x: bad"), FileNotFoundError("x: gone")])
def test_errors_raised_for_the_user_exit_2(tmp_path, cli_pm, capsys, monkeypatch, error):
    crash_in_data_loading(monkeypatch, error)
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    line = one_error_line(err)
    assert code == 2 and str(error) in line and "internal error" not in line


def test_out_of_memory_says_so_and_what_to_lower(tmp_path, cli_pm, capsys, monkeypatch):
    import torch

    crash_in_data_loading(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    line = one_error_line(err)
    assert code == 1 and line.startswith("error: out of memory") and "batch_size" in line
    assert "internal error" not in line


def test_internal_error_is_one_line_asking_to_report_it(tmp_path, cli_pm, capsys, monkeypatch):
    crash_in_data_loading(monkeypatch, KeyError("split"))
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    line = one_error_line(err)
    assert code == 1 and "internal error" in line and "KeyError" in line and "report" in line and "XFT_DEBUG=1" in line


def test_xft_debug_shows_the_traceback(tmp_path, cli_pm, capsys, monkeypatch):
    crash_in_data_loading(monkeypatch, KeyError("split"))
    monkeypatch.setenv("XFT_DEBUG", "1")
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    assert code == 1 and "Traceback" in err and "KeyError" in err


def test_error_text_with_markup_brackets_is_printed_as_is(tmp_path, cli_pm, capsys, monkeypatch):
    crash_in_data_loading(monkeypatch, UserError("labels [bold] and [/] stay"))
    code, err = run(capsys, "train", write_config(tmp_path, ROWS))
    assert code == 2 and "labels [bold] and [/] stay" in one_error_line(err)


# -------------------------------------------------------------------------------------- terminal width
@pytest.mark.parametrize("columns", ["20", "200"])
def test_errors_do_not_depend_on_the_terminal_width(tmp_path, cli_pm, capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    config = write_config(tmp_path, [*ROWS, {"text": "no label", "label": None}])
    code, err = run(capsys, "train", config)
    line = one_error_line(err)
    assert code == 2 and str(tmp_path / "data" / "en.train.jsonl") in line and "line 3" in line and "null" in line
