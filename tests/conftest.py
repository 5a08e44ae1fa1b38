"""Shared fixtures: tiny models built offline once per session, small three-language data, fresh plugin managers."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# three languages with different scripts; the label is carried by the words, so a few steps can learn it
WORDS = {
    "en": (["good", "great", "lovely", "excellent", "superb"], ["bad", "awful", "terrible", "poor", "horrible"]),
    "de": (["gut", "toll", "prima", "hervorragend", "super"], ["schlecht", "furchtbar", "schrecklich", "mies", "übel"]),
    "ru": (["хорошо", "отлично", "прекрасно", "замечательно", "чудесно"],
           ["плохо", "ужасно", "скверно", "отвратительно", "кошмар"]),
}
NOUNS = {
    "en": ["phone", "camera", "book", "lamp", "chair", "kettle", "watch", "bag"],
    "de": ["Telefon", "Kamera", "Buch", "Lampe", "Stuhl", "Kessel", "Uhr", "Tasche"],
    "ru": ["телефон", "камера", "книга", "лампа", "стул", "чайник", "часы", "сумка"],
}


def write_sentiment_data(folder: Path, sizes: dict[str, int] | None = None, dev: int = 16, seed: int = 0,
                         vocabulary: int = 5) -> Path:
    """Write <lang>.train/dev.jsonl with labels `pos`/`neg` decided by one polar word per text
    (drawn from the first `vocabulary` words of each polarity: fewer words learn in fewer steps)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"en": 48, "de": 32, "ru": 24}
    for language, n_train in sizes.items():
        positive, negative = WORDS[language]
        for split, n in (("train", n_train), ("dev", dev)):
            with (folder / f"{language}.{split}.jsonl").open("w", encoding="utf-8") as handle:
                for i in range(n):
                    label = "pos" if i % 2 == 0 else "neg"
                    word = rng.choice((positive if label == "pos" else negative)[:vocabulary])
                    noun = rng.choice(NOUNS[language][: max(2, vocabulary)])
                    handle.write(json.dumps({"text": f"{noun} {word}", "label": label}, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_model(tiny_root):
    """`tiny_model("bert")` -> folder of a tiny offline model of that family, built once per session."""
    from xft_core.testing import tiny_model_cache

    def get(family: str) -> Path:
        return tiny_model_cache(family, tiny_root)

    return get


@pytest.fixture(scope="session")
def sentiment_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("sentiment"))


@pytest.fixture
def pm():
    """A fresh plugin manager with the built-in plugins registered by hand (no entry-point scan)."""
    import xft_classification
    import xft_full
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    manager = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_full, xft_samplers, xft_classification, xft_metrics, xft_sources):
        manager.register(module, name=module.__name__)
    return manager


def tiny_config(model: Path, data: Path, out: Path, **over) -> dict:
    """A small run config as a mapping; keyword arguments override top-level keys, `training` merges."""
    config = {
        "name": "tiny",
        "output_dir": str(out),
        "model": str(model),
        "task": "sequence-classification",
        "strategy": "lora",
        "strategy_options": {"r": 4, "alpha": 8},
        "sampler": "uniform",
        "data": {"path": str(data)},
        "training": {"max_steps": 12, "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "precision": "no",
                     "log_every": 1, "seed": 7, "group_by_length": False},
        "data_check": False,
    }
    training = over.pop("training", {})
    config.update(over)
    config["training"].update(training)
    return config


def same_labels_but_near_ties(got: list[dict], expected: list[dict], tolerance: float = 1e-4) -> bool:
    """Predictions of two computations (batched and by hand, mixed and alone) agree label for label, except where
    the expected logits of two labels lie within `tolerance`: kernels that round differently (a CPU with native
    bf16, another batch shape) may break such a near tie either way, and argmax of equal-up-to-rounding logits is no
    behaviour to assert."""
    for a, b in zip(got, expected, strict=True):
        if a["label"] == b["label"]:
            continue
        logits = sorted(b["logits"], reverse=True)
        if len(logits) < 2 or logits[0] - logits[1] >= tolerance:
            return False
    return True


def near_ties(predictions: list[dict], tolerance: float = 1e-4) -> int:
    """Rows whose two best logits lie within `tolerance` (see same_labels_but_near_ties)."""
    gaps = [sorted(p["logits"], reverse=True) for p in predictions if len(p["logits"]) > 1]
    return sum(1 for logits in gaps if logits[0] - logits[1] < tolerance)
