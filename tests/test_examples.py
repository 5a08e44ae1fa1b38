"""The examples run as documented (with tiny offline models in place of the embedded default)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_trains_two_sentences_in_two_languages(tiny_model, tmp_path, monkeypatch):
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    # the default task (prompt-classification) scores label words with the model's own LM head: a decoder has one
    run = module["main"](["--model", str(tiny_model("gemma3")), "--output-dir", str(tmp_path), "--steps", "4"])
    adapter = Path(run.adapter_dirs["multilingual"])
    manifest = json.loads((adapter / "xft.json").read_text())
    assert manifest["languages"] == ["de", "en"] and manifest["labels"] == ["negative", "positive"]
    assert run.sampler.counts["en"] + run.sampler.counts["de"] == 4 * 2


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_every_example_config_loads_and_names_installed_plugins(config):
    from xft_core.config import load_config
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.training import resolve_plugins

    loaded = load_config(ROOT / "examples" / config)
    resolve_plugins(loaded, get_plugin_manager())
