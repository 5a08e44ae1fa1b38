"""`xft doctor`: the torch build, the device and bf16 lines, the installed plugins, an Accelerate config it is given, and
the same facts as JSON. Run through the CLI's `main` (and once as `python -m xft_core`, with the real entry points)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xft_core.cli import doctor
from xft_core.cli.main import main
from xft_core.hooks import MetricSpec, StrategySpec, hookimpl
from xft_core.hooks import manager as xft_plugins
from xft_core.testing import plugin_manager

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "examples" / "accelerate"


class Probe:
    """A plugin registered in code, as a test or a notebook would register one."""

    @hookimpl
    def xft_metrics(self):
        yield MetricSpec(name="doctor_probe_metric", compute=lambda p, r: 0.0)


class Clash:
    """Declares a strategy name the built-in xft_lora declares too."""

    @hookimpl
    def xft_strategies(self):
        yield StrategySpec(name="lora", build=lambda options: None)


@pytest.fixture
def pm():
    """xft's built-ins as installed (entry-point names, distribution xft) and Probe, whatever the environment blocks."""
    return plugin_manager(("doctor_probe", Probe()))


@pytest.fixture
def cli(monkeypatch, pm, capsys):
    """`xft doctor ARGS` in process over `pm`, on a wide terminal; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(xft_plugins, "_default", pm)
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("XFT_DEBUG", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["doctor", *map(str, args)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def report_json(run, *args: str) -> dict:
    code, out, err = run("--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_the_report_names_torch_the_device_bf16_and_the_plugins(cli):
    import torch

    from xft_core.util.precision import cpu_has_native_bf16, resolve_precision

    code, out, err = cli()
    assert code == 0, err
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "ROCm" if getattr(torch.version, "hip", None) else "CPU only"
    assert re.search(rf"│ torch +│ {re.escape(torch.__version__)} \({build}", out), out
    assert f"CPU: {os.cpu_count()} cores" in out
    assert ("CUDA: none" in out) != torch.cuda.is_available()
    native = "yes" if cpu_has_native_bf16() else "no"
    assert f"CPU native bf16 (AVX512_BF16 or AMX): {native}" in out
    device = doctor.best_device()
    assert f"{resolve_precision('auto', device)} on {device}" in out, "what precision: auto picks, on which device"
    assert "xft_lora (xft 0.1.0): strategy lora" in out
    assert "xft_samplers (xft 0.1.0): sampler proportional, uniform, temperature, unimax, round_robin" in out
    assert "doctor_probe (registered in code): metric doctor_probe_metric" in out
    assert "xft_core.cli." not in out, "xft's own commands are not listed as plugins"
    assert "blocked" not in out


def test_blocked_plugins_are_named_as_blocked_not_listed_as_loaded(cli, pm):
    pm.set_blocked("xft_langid")
    pm.set_blocked("not_installed")
    report = report_json(cli)
    assert "xft_langid" not in {row["plugin"] for row in report["plugins"]}
    assert report["blocked_plugins"] == ["not_installed", "xft_langid"]
    code, out, err = cli()
    assert code == 0, err
    assert "blocked (XFT_BLOCK_PLUGINS): not_installed, xft_langid" in out
    assert "xft_langid (" not in out


def test_json_holds_the_same_facts(cli):
    import torch

    from xft_core.util.precision import cpu_has_native_bf16

    report = report_json(cli)
    assert set(report) >= {"xft", "python", "torch", "devices", "precision", "threads", "packages", "plugins",
                           "accelerate_config", "model_cache"}
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda"] == torch.version.cuda
    hip = getattr(torch.version, "hip", None)
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else f"ROCm {hip}" if hip else "CPU only"
    assert report["torch"]["build"] == build
    assert report["devices"]["cpu_cores"] == os.cpu_count()
    assert len(report["devices"]["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert report["precision"]["cpu_native_bf16"] == cpu_has_native_bf16()
    assert report["precision"]["device"] == doctor.best_device()
    assert report["precision"]["gpu_bf16"] is (torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None)
    assert report["threads"]["torch"] == torch.get_num_threads()
    plugins = {row["plugin"]: row for row in report["plugins"]}
    assert plugins["xft_lora"]["distribution"] == "xft" and plugins["xft_lora"]["provides"] == {"strategy": ["lora"]}
    assert plugins["doctor_probe"]["distribution"] == "registered in code"
    assert plugins["doctor_probe"]["provides"] == {"metric": ["doctor_probe_metric"]}
    import transformers

    assert report["packages"]["transformers"] == transformers.__version__
    assert report["blocked_plugins"] == []


@pytest.mark.parametrize(("file", "mode", "verdict"), [
    ("ddp_multi_gpu.yaml", "MULTI_GPU", "supported"),
    ("deepspeed_zero3.yaml", "DEEPSPEED", "refused"),
    ("fsdp.yaml", "FSDP", "supported"),
])
def test_an_accelerate_config_file_is_read_and_judged(cli, file, mode, verdict):
    import yaml

    path = ACCELERATE / file
    expected = yaml.safe_load(path.read_text())
    config = report_json(cli, "--accelerate-config", path)["accelerate_config"]
    assert config["file"] == str(path) and config["distributed_type"] == mode
    assert config["num_processes"] == expected["num_processes"] and config["num_machines"] == expected["num_machines"]
    assert config["mixed_precision"] == expected["mixed_precision"]
    assert config["xft"].startswith(verdict)
    if mode == "DEEPSPEED":
        assert config["zero_stage"] == 3 and config["summary"].endswith("ZeRO-3")
    code, out, err = cli("--accelerate-config", path)
    assert code == 0, err
    flat = " ".join(out.split())
    assert str(path) in out
    assert f"{mode}, {expected['num_processes']} processes on {expected['num_machines']} machine(s)" in flat
    assert f"xft: {verdict}" in flat


def test_without_a_file_it_reports_accelerates_default_or_none(cli, monkeypatch, tmp_path):
    from accelerate.commands.config import config_args

    default = tmp_path / "accelerate" / "default_config.yaml"
    monkeypatch.setattr(config_args, "default_config_file", str(default))
    config = report_json(cli)["accelerate_config"]
    assert config == {"file": None, "summary": "none: single process", "default_file": str(default)}
    default.parent.mkdir()
    default.write_text((ACCELERATE / "ddp_multi_gpu.yaml").read_text())
    config = report_json(cli)["accelerate_config"]
    assert config["file"] == str(default) and config["distributed_type"] == "MULTI_GPU" and config["xft"] == "supported"


def test_a_missing_file_is_one_error_and_a_malformed_one_is_reported_not_a_crash(cli, tmp_path):
    code, out, err = cli("--accelerate-config", tmp_path / "nope.yaml")
    assert code == 2 and "Traceback" not in err
    assert "error:" in err and "--accelerate-config: no file" in " ".join(err.split())
    for name, text in [("broken.yaml", "not: [valid\n"), ("list.yaml", "- a\n"), ("empty.yaml", ""),
                       ("no-type.yaml", "num_processes: 2\n"), ("bad-type.yaml", "distributed_type: NOPE\n")]:
        (tmp_path / name).write_text(text)
        config = report_json(cli, "--accelerate-config", tmp_path / name)["accelerate_config"]
        assert config["file"] == str(tmp_path / name), name
        assert config["summary"].startswith("unreadable: ") and config["xft"] == "accelerate cannot read it", name


def test_a_plugin_conflict_is_shown_not_died_of(cli, pm):
    pm.register(Clash(), name="clash")
    report = report_json(cli)
    errors = [row for row in report["plugins"] if row["plugin"] == "(error)"]
    assert len(errors) == 1 and "Duplicate strategy name 'lora'" in errors[0]["provides"]["error"][0]
    code, out, err = cli()
    assert code == 0, err
    assert "Duplicate strategy name 'lora'" in " ".join(out.split())


def test_the_installed_command_lists_entry_point_plugins_and_honours_blocking(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XFT_DISABLE_PLUGIN_AUTOLOAD", "XFT_DEBUG")}
    env.update({"OMP_NUM_THREADS": "1", "XFT_BLOCK_PLUGINS": "xft_langid", "XFT_CACHE": str(tmp_path / "cache")})
    done = subprocess.run([sys.executable, "-m", "xft_core", "doctor", "--json", "--accelerate-config",
                           str(ACCELERATE / "ddp_multi_gpu.yaml")], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    plugins = {row["plugin"]: row for row in report["plugins"]}
    assert plugins["xft_lora"]["distribution"] == "xft" and plugins["xft_lora"]["version"] == report["xft"]
    assert "xft_langid" not in plugins and report["blocked_plugins"] == ["xft_langid"], "a blocked plugin is not loaded"
    assert report["accelerate_config"]["xft"] == "supported"
    assert report["model_cache"] == {"dir": str(tmp_path / "cache"), "exists": False, "models": [],
                                     "embedded": report["model_cache"]["embedded"]}
