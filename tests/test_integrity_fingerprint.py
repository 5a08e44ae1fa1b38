"""An adapter is attached only to the base it was trained on: every package names its base's fingerprint, and
every path that puts an adapter on a model (init_from, the router, the transfer matrix) checks it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.adapters import AdapterError, base_fingerprint, check_compatible, load_base
from xft_core.config import load_config
from xft_core.training import prepare, train


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("easy"), vocabulary=2)


@pytest.fixture(scope="module")
def package(tiny_model, easy_data, tmp_path_factory) -> Path:
    """The multilingual LoRA package of a 2-step run on the tiny bert (read-only: tests copy it)."""
    import xft_classification
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_samplers, xft_classification, xft_metrics, xft_sources):
        pm.register(module, name=module.__name__)
    out = tmp_path_factory.mktemp("shared")
    run = train(tiny_config(tiny_model("bert"), easy_data, out, name="shared", training={"max_steps": 2}), pm=pm,
                progress=False)
    return run.adapter_dirs["multilingual"]


def copy_package(source: Path, target: Path, **changes) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / "xft.json").read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    (target / "xft.json").write_text(json.dumps(manifest))
    return target


def other_base(tiny_model, folder: Path) -> Path:
    """The tiny bert with one weight changed: same shapes, another model."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model("bert"), folder)
    (folder / ".xft-fingerprint.json").unlink(missing_ok=True)
    weights = load_file(str(folder / "model.safetensors"))
    first = sorted(weights)[0]
    weights[first] = weights[first] + 0.01
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_a_manifest_without_base_fingerprint_is_refused_with_how_to_fix(package, tmp_path, pm):
    unsigned = copy_package(package, tmp_path / "unsigned", base_fingerprint=None)
    with pytest.raises(AdapterError, match="base_fingerprint") as error:
        check_compatible(load_base(package, pm), unsigned)
    message = str(error.value)
    assert str(unsigned) in message and "base_fingerprint(" in message, message


def test_the_router_refuses_an_unsigned_package(package, tmp_path, pm):
    from xft_core.inference.router import Router

    router = Router(package, pm=pm)
    router.register("signed", package)
    unsigned = copy_package(package, tmp_path / "unsigned", base_fingerprint=None)
    with pytest.raises(AdapterError, match="base_fingerprint"):
        router.register("unsigned", unsigned)
    with pytest.raises(AdapterError, match="base_fingerprint"):
        router.replace("signed", unsigned)


@pytest.mark.parametrize("fingerprint", [None, "0" * 64])
def test_the_transfer_matrix_refuses_a_package_of_another_or_no_base(fingerprint, package, easy_data, tmp_path, pm):
    from xft_core.evaluation import transfer_matrix

    suspect = copy_package(package, tmp_path / "suspect", base_fingerprint=fingerprint)
    with pytest.raises(AdapterError, match="base_fingerprint" if fingerprint is None else "different base model"):
        transfer_matrix([package, suspect], easy_data, split="dev", pm=pm, progress=False, include_base=False)


def test_init_from_an_adapter_of_another_base_is_refused(package, tiny_model, easy_data, tmp_path, pm):
    base = other_base(tiny_model, tmp_path / "other-bert")
    assert base_fingerprint(base) != base_fingerprint(tiny_model("bert"))
    config = tiny_config(base, easy_data, tmp_path, name="from-other", adapters="per_language", init_from=str(package))
    with pytest.raises(AdapterError, match="init_from") as error:
        prepare(load_config(config), pm=pm)
    assert "different base model" in str(error.value) and str(package) in str(error.value)
    unsigned = copy_package(package, tmp_path / "unsigned", base_fingerprint=None)
    same_base = tiny_config(tiny_model("bert"), easy_data, tmp_path, name="from-unsigned", adapters="per_language",
                            init_from=str(unsigned))
    with pytest.raises(AdapterError, match="base_fingerprint"):
        prepare(load_config(same_base), pm=pm)
    # the package's own base is accepted
    ok = tiny_config(tiny_model("bert"), easy_data, tmp_path, name="from-same", adapters="per_language",
                     init_from=str(package))
    assert prepare(load_config(ok), pm=pm).config.init_from == str(package)
