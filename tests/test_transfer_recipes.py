"""Transfer recipes on tiny models: adapter scale (WiSE-FT interpolation toward the base), checkpoint averaging and
few-shot target rows."""

from __future__ import annotations

import json

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


def test_xft_eval_scale_flag_global_per_language_and_bad_values():
    from xft_core.cli.eval import parse_scale
    from xft_core.config import ConfigError

    assert parse_scale(None) is None and parse_scale("0.5") == 0.5
    assert parse_scale("de=0.5, *=0.8") == {"de": 0.5, "*": 0.8}
    for bad in ("half", "de=x", "de=0.5,ru"):
        with pytest.raises(ConfigError, match="--scale"):
            parse_scale(bad)


def test_xft_eval_scale_zero_reports_the_base_scores(verbalizer_run, tmp_path, capsys):
    from xft_core.cli.main import main

    root = str(verbalizer_run.paths.root)
    assert main(["eval", root, "--split", "dev", "--scale", "0", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r" / "transfer.json").read_text())
    rows = {row["label"]: row["cells"] for row in report["rows"]}
    assert rows["per-language"] == rows["base (no adapter)"]
    assert main(["eval", root, "--split", "dev", "--scale", "1.5", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "between 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ few-shot
def test_few_shot_rows_come_from_train_reproducibly_and_are_marked(tiny_model, sentiment_data, tmp_path, vpm):
    from xft_core.config import load_config
    from xft_core.evaluation import transfer_matrix, write_reports
    from xft_core.training import prepare, train

    config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification",
                         sampler="proportional", training={"max_steps": 4})
    config["data"].update(train_languages=["en"], eval_languages=["en", "de", "ru"], few_shot=4)
    first, again = prepare(load_config(config), pm=vpm), prepare(load_config(config), pm=vpm)
    assert sorted(first.train) == ["de", "en", "ru"] and first.few_shot_languages == ["de", "ru"]
    assert first.train_languages == ["en"] and first.adapter_names == ["en"], "the adapter is still the English one"
    for language in ("de", "ru"):
        rows, where = first.train[language].rows, first.train[language].where
        assert len(rows) == 4 and rows == again.train[language].rows, "the same rows for the same seed"
        assert all(file.endswith(f"{language}.train.jsonl") for file, _ in where), "drawn from train, never dev or test"
    other = prepare(load_config({**config, "training": {**config["training"], "seed": 8}}), pm=vpm)
    assert any(other.train[lang].rows != first.train[lang].rows for lang in ("de", "ru")), "another seed, other rows"

    run = train(config, pm=vpm, progress=False)
    manifest = (run.adapter_dirs["en"] / "xft.json").read_text()
    assert '"few_shot": {' in manifest and '"k": 4' in manifest
    matrix = transfer_matrix(run.paths.root, split="dev", pm=vpm, progress=False)
    row = matrix.rows[-1]
    assert row.label == "en (4-shot)" and row.few_shot == {"de": 4, "ru": 4}
    assert any("few-shot" in note for note in matrix.notes)
    markdown = write_reports(matrix, tmp_path / "report")["md"].read_text()
    assert "†" in markdown


def test_few_shot_needs_target_languages_with_train_rows(tiny_model, sentiment_data, tmp_path, vpm):
    from xft_core.config import ConfigError, load_config
    from xft_core.data import DataError
    from xft_core.training import prepare

    base = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification")
    with pytest.raises(DataError, match="no 'train' rows for target language 'fr'"):
        prepare(load_config({**base, "data": {"path": str(sentiment_data), "train_languages": ["en"],
                                              "eval_languages": ["fr"], "few_shot": 2}}), pm=vpm)
    with pytest.raises(ConfigError, match="adapters: single"):
        load_config({**base, "adapters": "per_language", "data": {"path": str(sentiment_data), "few_shot": 2}})


# ---------------------------------------------------------------------------------------- checkpoint averaging
def test_checkpoint_averaging_gives_the_mean_of_the_last_checkpoints(tiny_model, sentiment_data, tmp_path, vpm):
    import torch
    from safetensors.torch import load_file

    from xft_core.training import train

    config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification",
                         training={"max_steps": 9, "save_every": 3, "keep_checkpoints": 3, "average_checkpoints": 3})
    run = train(config, pm=vpm, progress=False)
    assert run.averaged_steps == [3, 6, 9]
    snapshots = [load_file(str(run.paths.checkpoints / f"step-{step}" / "trainable.safetensors")) for step in (3, 6, 9)]
    params = dict(run.unwrapped_model().named_parameters())
    for name in snapshots[0]:
        expected = sum(s[name].double() for s in snapshots) / 3
        assert torch.allclose(params[name].double(), expected, atol=1e-6), name
    assert not torch.equal(snapshots[0][name], snapshots[2][name]), "the checkpoints differ, so the mean is not any one"
    assert '"averaged_checkpoints": [\n    3,\n    6,\n    9\n  ]' in (run.adapter_dirs["multilingual"] / "xft.json").read_text()


def test_checkpoint_averaging_is_checked_in_the_config(sentiment_data):
    from xft_core.config import ConfigError, load_config

    data = {"path": str(sentiment_data)}
    with pytest.raises(ConfigError, match="save_every"):
        load_config({"data": data, "training": {"average_checkpoints": 3}})
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        load_config({"data": data, "training": {"average_checkpoints": 3, "save_every": 5, "keep_checkpoints": 2}})


# ------------------------------------------------------------------------------------ length-grouped batches
def test_length_grouped_batches_pad_less_and_still_see_every_row_once_per_epoch():
    import random

    from xft_core.training.streams import LanguageStream

    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(640)]
    grouped, plain = LanguageStream(640, 1, lengths), LanguageStream(640, 1)

    def padding(stream):
        total, seen = 0, []
        for _ in range(40):  # one epoch of 40 batches of 16
            batch = stream.batch(16)
            seen += batch
            total += sum(max(lengths[i] for i in batch) - lengths[i] for i in batch)
        return total, seen

    grouped_padding, grouped_seen = padding(grouped)
    plain_padding, plain_seen = padding(plain)
    assert sorted(grouped_seen) == list(range(640)) == sorted(plain_seen), "every row once per epoch"
    assert grouped_padding < plain_padding / 4
    resumed = LanguageStream(640, 1, lengths)
    state = LanguageStream(640, 1, lengths)
    state.batch(16)
    resumed.load_state_dict(state.state_dict())
    assert [resumed.batch(16) for _ in range(50)] == [state.batch(16) for _ in range(50)], "resume draws the same batches"


# ------------------------------------------------------------------------------------- frozen base in bf16
def test_frozen_base_weights_in_bf16_and_trainable_in_float32(tiny_model, sentiment_data, tmp_path, vpm):
    import torch

    from xft_core.config import load_config
    from xft_core.training import prepare

    config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, task="prompt-classification",
                         training={"precision": "bf16"})
    run = prepare(load_config(config), pm=vpm)
    dtypes = {(p.requires_grad, p.dtype) for p in run.model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    kept = prepare(load_config({**config, "training": {**config["training"], "base_dtype": "float32"}}), pm=vpm)
    assert {p.dtype for p in kept.model.parameters()} == {torch.float32}


# ------------------------------------------------------------------------------------- frozen-prefix cache
def test_frozen_prefix_cache_gives_the_same_training_and_skips_frozen_layers(tiny_model, sentiment_data, tmp_path, pm):
    import torch

    from xft_core.training import train

    def run(cache: bool, name: str):
        config = tiny_config(tiny_model("gemma3"), sentiment_data, tmp_path, name=name, training={"max_steps": 24},
                             strategy_options={"r": 4, "alpha": 8, "top_layers": 1, "cache_frozen_layers": cache})
        return train(config, pm=pm, progress=False)

    cached, plain = run(True, "cached"), run(False, "plain")
    cache = cached.strategy.prefix_cache
    assert plain.strategy.prefix_cache is None and cache is not None and cache.first == 1
    assert cache.hits > 0, "later epochs replay the frozen layer's output"
    # The same computation, not the same bits: kernels may block a replayed batch differently from a computed one
    # (seen on a CPU with AVX512_BF16: 1.2e-7 apart at step 15), so floats compare within a tolerance that a real
    # error (a stale or misplaced cached row moves the loss by 1e-3 or more) still fails.
    losses = {r["step"]: r["loss"] for r in cached.history if "loss" in r}
    expected = {r["step"]: r["loss"] for r in plain.history if "loss" in r}
    assert losses.keys() == expected.keys() and len(losses) == 24
    for step, loss in expected.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), f"step {step}: {losses[step]} vs {loss}"
    for (name, a), (_, b) in zip(cached.unwrapped_model().named_parameters(), plain.unwrapped_model().named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_frozen_prefix_cache_stays_off_where_layers_use_dropout(tiny_model, sentiment_data, tmp_path, pm):
    from xft_core.config import load_config
    from xft_core.training import prepare

    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path, strategy_options={"r": 4, "alpha": 8, "top_layers": 1})
    assert prepare(load_config(config), pm=pm).strategy.prefix_cache is None, "BERT's hidden dropout makes layers random"
