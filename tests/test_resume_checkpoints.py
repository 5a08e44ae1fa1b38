"""Resume is crash-safe: corrupt checkpoints fall back to the previous complete one, the saved config is never
rewritten and guards what is trained, orphans of a killed write are cleaned, finished work is never overwritten."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from conftest import tiny_config, write_sentiment_data
from xft_core.config import ConfigError, load_config
from xft_core.training import train

FILES = ["trainable.safetensors", "optimizer.pt", "rng.safetensors", "state.json"]


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("easy"), vocabulary=2)


def config_for(tiny_model, data: Path, out: Path, **training) -> dict:
    config = tiny_config(tiny_model("bert"), data, out, sampler="temperature",
                         training={"max_steps": 6, "save_every": 2, "keep_checkpoints": 0, **training})
    config["strategy_options"] = {"r": 4, "alpha": 8, "dropout": 0.1}  # dropout: the RNG state matters
    return config


@pytest.fixture(scope="module")
def finished(tiny_model, easy_data, tmp_path_factory) -> Path:
    """A run of 6 steps with checkpoints at steps 2, 4 and 6 (read-only: tests copy it)."""
    import xft_classification
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_samplers, xft_classification, xft_metrics, xft_sources):
        pm.register(module, name=module.__name__)
    out = tmp_path_factory.mktemp("finished")
    train(config_for(tiny_model, easy_data, out), pm=pm, progress=False)
    return out / "tiny"


def copy_run(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "tiny")
    return tmp_path / "tiny"


def recording_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=400, color_system=None), buffer


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("bad", FILES)
def test_resume_falls_back_past_a_checkpoint_with_a_corrupt_file(bad, finished, tiny_model, easy_data, tmp_path, pm):
    from safetensors.torch import load_file

    root = copy_run(finished, tmp_path)
    # copies: load_file maps the file, which is about to be cut short
    expected = {k: v.clone() for k, v in load_file(str(root / "checkpoints" / "step-6" / "trainable.safetensors")).items()}
    truncate(root / "checkpoints" / "step-6" / bad)
    console, said = recording_console()
    run = train(config_for(tiny_model, easy_data, tmp_path), pm=pm, progress=False, resume=True, console=console)
    text = said.getvalue()
    assert f"step-6/{bad}" in text and "step-4" in text, text
    assert run.step == 6
    again = load_file(str(root / "checkpoints" / "step-6" / "trainable.safetensors"))
    assert max(float((expected[k] - again[k]).abs().max()) for k in expected) < 1e-6, "resumed from step-4, same end"
    steps = [r["step"] for r in map(json.loads, (root / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == list(range(1, 7))


def test_resume_without_a_usable_checkpoint_is_a_clear_error(finished, tiny_model, easy_data, tmp_path, pm):
    root = copy_run(finished, tmp_path)
    for step, bad in ((2, "state.json"), (4, "optimizer.pt"), (6, "trainable.safetensors")):
        truncate(root / "checkpoints" / f"step-{step}" / bad)
    with pytest.raises(FileNotFoundError, match="no usable checkpoint") as error:
        train(config_for(tiny_model, easy_data, tmp_path), pm=pm, progress=False, resume=True,
              console=recording_console()[0])
    assert "step-2/state.json" in str(error.value) and "step-6/trainable.safetensors" in str(error.value)


def test_resume_refuses_a_changed_training_key_and_never_rewrites_config_yaml(finished, tiny_model, easy_data, tmp_path, pm):
    root = copy_run(finished, tmp_path)
    saved = (root / "config.yaml").read_bytes()
    changed = config_for(tiny_model, easy_data, tmp_path, learning_rate=1e-2)
    changed["strategy_options"]["r"] = 8
    with pytest.raises(ConfigError, match="training.learning_rate") as error:
        train(changed, pm=pm, progress=False, resume=True, console=recording_console()[0])
    message = str(error.value)
    assert "strategy_options.r" in message and "training.max_steps" in message, "names the changed and the safe keys"
    assert (root / "config.yaml").read_bytes() == saved
    # keys that do not change what is trained may change: the run goes on to the new end
    longer = config_for(tiny_model, easy_data, tmp_path, max_steps=8, eval_every=4, log_every=2, keep_checkpoints=2)
    run = train(longer, pm=pm, progress=False, resume=True, console=recording_console()[0])
    assert run.step == 8
    assert (root / "config.yaml").read_bytes() == saved


def test_resume_cleans_up_what_a_killed_write_left(finished, tiny_model, easy_data, tmp_path, pm):
    root = copy_run(finished, tmp_path)
    checkpoints = root / "checkpoints"
    half = checkpoints / ".step-8.k3x_9abc.tmp"  # the temporary folder of a checkpoint write killed half-way
    half.mkdir()
    shutil.copy(checkpoints / "step-6" / "trainable.safetensors", half)
    # killed between moving the old step-6 aside and renaming the new one into place: the old one is put back
    (checkpoints / "step-6").rename(checkpoints / ".step-6.old-4242")
    shutil.copytree(checkpoints / "step-4", checkpoints / ".step-4.old-4243")
    (root / "adapters" / ".multilingual.abcd1234.tmp").mkdir()
    (root / ".metrics.jsonl.zzzz1234.tmp").write_text("{}\n")
    console, said = recording_console()
    run = train(config_for(tiny_model, easy_data, tmp_path), pm=pm, progress=False, resume=True, console=console)
    assert "step 6" in said.getvalue()
    assert run.step == 6
    leftovers = [p.name for folder in (root, checkpoints, root / "adapters") for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-4", "step-6"]


def test_a_folder_holding_adapters_is_never_silently_overwritten(tiny_model, easy_data, tmp_path, pm, capsys):
    import yaml

    from xft_core.cli.main import main

    package = tmp_path / "tiny" / "adapters" / "multilingual"
    package.mkdir(parents=True)
    (package / "xft.json").write_text("{}\n")
    config = config_for(tiny_model, easy_data, tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, pm=pm, progress=False)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 2
    assert "adapters" in capsys.readouterr().err
    assert (package / "xft.json").read_text() == "{}\n"


@pytest.mark.parametrize("name", ["../../x", "a/b", "/tmp/x", "..", ".", "a\\b", ""])
def test_the_run_name_is_a_plain_folder_name(name, easy_data, tmp_path):
    with pytest.raises(ConfigError, match="name"):
        load_config({"name": name, "output_dir": str(tmp_path), "data": {"path": str(easy_data)}})


def test_plain_run_names_are_accepted(easy_data, tmp_path):
    for name in ("run", "de-en_2.v1", "ëxperiment"):
        assert load_config({"name": name, "output_dir": str(tmp_path), "data": {"path": str(easy_data)}}).name == name


@pytest.mark.parametrize("failure, said", [
    ("torch", "no space left on the device while writing this checkpoint file"),  # torch's enforce-fail, disk full
    ("enospc", "no space left on the device while writing this checkpoint file"),
    ("efbig", "file too large for this file system or for the file-size limit"),
])
def test_a_full_disk_while_checkpointing_names_the_file_and_the_cause(failure, said, tiny_model, easy_data, tmp_path,
                                                                      pm, monkeypatch):
    """Was `RuntimeError: [enforce fail at inline_container.cc:672]`, naming neither file nor cause."""
    import errno

    import torch

    import xft_core.training.checkpoints as checkpoints

    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) < 2:  # the checkpoint of step 2 is written, that of step 4 fails
            return real_save(obj, path, *args, **kwargs)
        if failure == "torch":
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                               "data/3: file write failed")
        code = errno.ENOSPC if failure == "enospc" else errno.EFBIG
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(checkpoints, "_free_bytes", lambda folder: 4096)  # what a full disk reports
    with pytest.raises(OSError) as error:
        train(config_for(tiny_model, easy_data, tmp_path), pm=pm, progress=False)
    run = tmp_path / "tiny"
    assert str(error.value).startswith(f"{run / 'checkpoints' / 'step-4' / 'optimizer.pt'}: {said}"), error.value
    assert "the last complete checkpoint is kept" in str(error.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"], "no half-written checkpoint"
    assert (run / "checkpoints" / "step-2" / "COMPLETE").is_file()
