"""Transfer recipes on tiny models: adapter scale (WiSE-FT interpolation toward the base), checkpoint averaging and
few-shot target rows."""

from __future__ import annotations

import pytest

from conftest import tiny_config

TEXTS = {"de": ["Kamera gut", "Buch schlecht", "Lampe toll", "Stuhl mies"],
         "ru": ["камера хорошо", "книга плохо", "лампа отлично", "стул ужасно"]}


@pytest.fixture
def vpm(pm):
    import xft_verbalizer

    pm.register(xft_verbalizer, name="xft_verbalizer")
    return pm


@pytest.fixture
def verbalizer_run(tiny_model, sentiment_data, tmp_path_factory, vpm):
    from xft_core.training import train

    out = tmp_path_factory.mktemp("scale")
    config = tiny_config(tiny_model("gemma3"), sentiment_data, out, task="prompt-classification", adapters="per_language",
                         task_options={"template": "{text}\nVerdict:"}, training={"max_steps": 12, "learning_rate": 2e-2})
    return train(config, pm=vpm, progress=False)


def _logits(predictions):
    return [p["logits"] for p in predictions]


def _close(a, b, tolerance=1e-5):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) < tolerance


def test_scale_zero_is_the_base_one_the_adapter_and_between_is_between(verbalizer_run, vpm):
    from xft_core.inference import BASE, Router

    texts = TEXTS["de"]
    base = _logits(Router.from_run(verbalizer_run.paths.root, pm=vpm).predict(texts, adapters=BASE))
    adapter = _logits(Router.from_run(verbalizer_run.paths.root, pm=vpm).predict(texts, "de"))
    assert not _close(base, adapter, 1e-3), "training moved the adapter away from the base"
    assert _close(_logits(Router.from_run(verbalizer_run.paths.root, pm=vpm, scale=0.0).predict(texts, "de")), base)
    assert _close(_logits(Router.from_run(verbalizer_run.paths.root, pm=vpm, scale=1.0).predict(texts, "de")), adapter)
    half = _logits(Router.from_run(verbalizer_run.paths.root, pm=vpm, scale=0.5).predict(texts, "de"))
    assert not _close(half, base, 1e-4) and not _close(half, adapter, 1e-4)
    with pytest.raises(ValueError, match="between 0"):
        Router.from_run(verbalizer_run.paths.root, pm=vpm, scale=1.5)


def test_scale_per_language_in_a_mixed_batch(verbalizer_run, vpm):
    from xft_core.inference import BASE, Router

    texts = TEXTS["de"] + TEXTS["ru"]
    languages = ["de"] * 4 + ["ru"] * 4
    plain = Router.from_run(verbalizer_run.paths.root, pm=vpm)
    base, adapters = _logits(plain.predict(texts, adapters=BASE)), _logits(plain.predict(texts, languages))
    mixed = _logits(Router.from_run(verbalizer_run.paths.root, pm=vpm, scale={"de": 0.0, "*": 1.0}).predict(texts, languages))
    assert _close(mixed[:4], base[:4]), "German at scale 0 answers as the base"
    assert _close(mixed[4:], adapters[4:]), "Russian keeps its adapter"


def test_transfer_matrix_at_scale_zero_equals_the_base_row(verbalizer_run, vpm):
    from xft_core.evaluation import transfer_matrix

    plain = transfer_matrix(verbalizer_run.paths.root, split="dev", pm=vpm, progress=False)
    zero = transfer_matrix(verbalizer_run.paths.root, split="dev", pm=vpm, progress=False, scale=0.0)
    base_row = plain.row("base (no adapter)").cells
    assert zero.row("per-language").cells == base_row
    assert plain.row("per-language").cells != base_row
    assert any("WiSE-FT" in note for note in zero.notes)
