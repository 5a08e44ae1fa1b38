"""The plugin's own tests, as a plugin author writes them: xft's fixtures give a fresh plugin manager (`xft_pm`) and
tiny offline models (`tiny_model`); the plugin is registered by hand, so the tests need it installed nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import xft_ia3

TEXTS = {"en": ("phone good", "phone bad"), "de": ("Buch gut", "Buch schlecht")}


def write_data(folder: Path, sizes: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for language, size in sizes.items():
        for split, n in (("train", size), ("dev", 4)):
            rows = [{"text": TEXTS[language][i % 2], "label": ("pos", "neg")[i % 2]} for i in range(n)]
            (folder / f"{language}.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_the_plugin_provides_its_strategy_and_sampler(xft_pm):
    from xft_core.hooks.manager import collect

    xft_pm.register(xft_ia3, name="xft_ia3")
    assert collect(xft_pm, "strategies")["ia3"].plugin == "xft_ia3"
    assert collect(xft_pm, "samplers")["curriculum"].plugin == "xft_ia3"
    assert "lora" in collect(xft_pm, "strategies"), "xft's built-ins are there too"


def test_curriculum_goes_from_proportional_to_uniform():
    sampler = xft_ia3.CurriculumSampler({"en": 30, "de": 10}, xft_ia3.CurriculumOptions(), seed=0)
    assert sampler.probabilities() == pytest.approx({"de": 0.25, "en": 0.75})
    sampler.set_progress(1.0)
    assert sampler.probabilities() == pytest.approx({"de": 0.5, "en": 0.5})


@pytest.mark.parametrize("adapters", ["single", "per_language"])
def test_ia3_trains_with_the_curriculum_and_saves_peft_files(adapters, xft_pm, tiny_model, tmp_path):
    from peft import IA3Config, PeftConfig
    from xft_core.training import train

    xft_pm.register(xft_ia3, name="xft_ia3")
    config = {
        "name": "ia3", "output_dir": str(tmp_path / "runs"), "model": str(tiny_model("bert")),
        "task": "sequence-classification", "strategy": "ia3", "sampler": "curriculum", "adapters": adapters,
        "data": {"path": str(write_data(tmp_path / "data", {"en": 12, "de": 4}))}, "data_check": False,
        "training": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-2, "precision": "no", "seed": 1},
    }
    run = train(config, pm=xft_pm, progress=False)
    assert sum(run.sampler.counts.values()) == 4 * 4
    for folder in map(Path, run.adapter_dirs.values()):
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "xft.json"]
        assert isinstance(PeftConfig.from_pretrained(str(folder)), IA3Config)
