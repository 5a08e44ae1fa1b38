"""Languages without an adapter of their own, on tiny models: the fallback map routes as written, a merge of one
adapter at weight 1 computes what that adapter computes (and is a package plain peft loads), an ensemble of one
adapter answers like it, an ensemble of two averages their probabilities, the nearest languages by a distance table,
and errors that name the unknown language or adapter and the valid choices."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.adapters import AdapterError
from xft_core.inference.fallback import load_fallback_map
from xft_core.inference.router import BASE, Router
from xft_core.training import train
from xft_core.util.language_distance import LanguageDistanceError, distance, nearest

TEXTS = ["phone good", "camera bad", "Telefon gut", "камера плохо"]


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """Per-language LoRA runs (en, de, ru) on a tiny BERT (each adapter with its own classification-head copy) and a
    tiny Gemma 3."""
    import xft_classification
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_samplers, xft_classification, xft_metrics, xft_sources):
        pm.register(module, name=module.__name__)
    root = tmp_path_factory.mktemp("fallback")
    data = write_sentiment_data(root / "data", vocabulary=2)
    out = {}
    for family in ("bert", "gemma3"):
        config = tiny_config(tiny_model(family), data, root / "runs", name=family, sampler="round_robin",
                             adapters="per_language", training={"max_steps": 12, "learning_rate": 5e-2})
        out[family] = train(config, pm=pm, progress=False).paths.root
    return out


def plain_peft(folder, texts: list[str]) -> list[list[float]]:
    """The package loaded with plain transformers + peft, as any peft user would."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    manifest = json.loads((folder / "xft.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(manifest["base_model"])
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    base = AutoModelForSequenceClassification.from_pretrained(
        manifest["base_model"], num_labels=len(manifest["labels"]), pad_token_id=tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(base, str(folder)).eval()
    with torch.no_grad():
        return [model(**tokenizer([text], return_tensors="pt")).logits[0].tolist() for text in texts]


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) < tol


def test_the_fallback_map_routes_as_written(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm, fallback={"fr": "de", "es": "ru", "*": "en"})
    out = router.predict(TEXTS, ["fr", "es", "it", "de"])
    assert [p["adapter"] for p in out] == ["de", "ru", "en", "de"]
    assert [p["language"] for p in out] == ["fr", "es", "it", "de"]
    direct = router.predict(TEXTS, adapters=["de", "ru", "en", "de"])
    assert all(close(a["logits"], b["logits"], 1e-6) for a, b in zip(out, direct))
    assert router.fallback == "en"
    router.set_fallback({"fr": "ru"})  # no "*": other languages go to the bare base
    assert [p["adapter"] for p in router.predict(TEXTS[:2], ["fr", "it"])] == ["ru", BASE]
    with pytest.raises(AdapterError, match="'ru' is the fallback"):
        router.unregister("ru")


def test_a_fallback_map_file_and_the_sources_json_of_eval(runs, pm, tmp_path):
    plain = tmp_path / "map.json"
    plain.write_text(json.dumps({"fr": "de", "es": {"ensemble": ["en", "ru"]}}))
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"format": "xft-sources/1", "targets": {}, "fallback_map": {"fr": "ru"}}))
    router = Router.from_run(runs["bert"], pm=pm, fallback=load_fallback_map(plain))
    assert [p["adapter"] for p in router.predict(TEXTS[:2], ["fr", "es"])] == ["de", "en+ru"]
    router.set_fallback(load_fallback_map(sources))
    assert router.predict(TEXTS[:1], "fr")[0]["adapter"] == "ru"
    (tmp_path / "bad.json").write_text(json.dumps({"fr": {"blend": ["en"]}}))
    with pytest.raises(AdapterError, match=r"bad\.json\.fr: .* is not a route\. Write one of: an adapter name"):
        load_fallback_map(tmp_path / "bad.json")


def test_unknown_adapters_in_the_map_are_named_with_the_registered_ones(runs, pm):
    with pytest.raises(AdapterError, match=r"adapter 'zz' \(for fr\) is not registered; registered adapters: de, en, ru"):
        Router.from_run(runs["bert"], pm=pm, fallback={"fr": "zz"})
    router = Router.from_run(runs["bert"], pm=pm)
    with pytest.raises(AdapterError, match=r"adapter 'nope' \(for es\) is not registered; registered adapters: de, en, ru"):
        router.set_fallback({"es": {"merge": {"en": 0.5, "nope": 0.5}}})
    with pytest.raises(AdapterError, match="a weight must be a positive number"):
        router.set_fallback({"es": {"merge": {"en": -1}}})


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_a_merge_of_one_adapter_at_weight_one_is_that_adapter(family, runs, pm):
    router = Router.from_run(runs[family], pm=pm, fallback={"fr": {"merge": {"de": 1.0}}})
    merged = router.predict(TEXTS, "fr")
    alone = router.predict(TEXTS, "de")
    assert {p["adapter"] for p in merged} == {"merged-fr"}
    assert all(close(a["logits"], b["logits"]) for a, b in zip(merged, alone))
    assert router.routes()["fr"] == "merged-fr"
    folder = router.registered()["merged-fr"]
    manifest = json.loads((folder / "xft.json").read_text())
    assert manifest["languages"] == ["fr"] and manifest["merged_from"]["de"]["weight"] == 1.0
    assert close([x for p in merged for x in p["logits"]], [x for row in plain_peft(folder, TEXTS) for x in row])
    router.set_fallback(None)  # merges made for the old map go, with their folders
    assert "merged-fr" not in router.registered() and not folder.exists()


def test_a_merge_of_two_adapters_adds_their_weighted_updates(runs, pm):
    """Half of en plus half of de: every LoRA layer's delta is 0.5 * delta_en + 0.5 * delta_de."""
    from peft.tuners.lora import LoraLayer

    router = Router.from_run(runs["gemma3"], pm=pm, fallback={"fr": {"merge": {"en": 0.5, "de": 0.5}}})
    router.predict(TEXTS[:1], "fr")
    router.load("en")
    router.load("de")
    slot = router.cache.slot
    layers = [m for m in router.model.modules() if isinstance(m, LoraLayer) and slot("merged-fr") in m.lora_A]
    assert layers
    for layer in layers:
        got = layer.get_delta_weight(slot("merged-fr"))
        want = 0.5 * layer.get_delta_weight(slot("en")) + 0.5 * layer.get_delta_weight(slot("de"))
        assert (got - want).abs().max().item() < 1e-6


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_an_ensemble_of_one_adapter_answers_like_it_and_of_two_averages_them(family, runs, pm):
    router = Router.from_run(runs[family], pm=pm, fallback={"fr": {"ensemble": ["de"]}, "es": {"ensemble": ["de", "en"]}})
    one = router.predict(TEXTS, "fr")
    de, en = router.predict(TEXTS, "de"), router.predict(TEXTS, "en")
    for a, b in zip(one, de):
        assert a["label"] == b["label"] and close(list(a["scores"].values()), list(b["scores"].values()), 1e-6)
        assert a["adapter"] == "de" and a["ensemble"][0]["adapter_hash"] == b["adapter_hash"]
    two = router.predict(TEXTS, "es")
    for a, b, c in zip(two, de, en):
        mean = {label: (b["scores"][label] + c["scores"][label]) / 2 for label in b["scores"]}
        assert close(list(a["scores"].values()), list(mean.values()), 1e-6)
        assert a["label"] == max(mean, key=mean.__getitem__) and a["adapter"] == "de+en"
    mixed = router.predict(TEXTS, ["es", "de", "fr", "ru"])  # ensembles and plain rows in one request
    assert [p["adapter"] for p in mixed] == ["de+en", "de", "de", "ru"]


def test_the_nearest_languages_by_a_distance_table(runs, pm):
    # CLDR matching distances (langcodes): French is as far from English as from German, and further from Russian
    assert distance("fr", "en", "cldr") == distance("fr", "de", "cldr") < distance("fr", "ru", "cldr")
    assert nearest("fr", {"en": ["en"], "de": ["de"], "ru": ["ru"]}, k=2, table="cldr") == {"de": 0.5, "en": 0.5}
    router = Router.from_run(runs["bert"], pm=pm, fallback={"*": {"nearest": "ensemble", "k": 2, "table": "cldr"}})
    answer = router.predict(TEXTS[:1], "fr")[0]
    assert sorted(m["adapter"] for m in answer["ensemble"]) == ["de", "en"] and answer["language"] == "fr"
    assert router.predict(TEXTS[:1], "de")[0]["adapter"] == "de"  # a language with its own adapter keeps it
    with pytest.raises(LanguageDistanceError, match="unknown language-distance table 'wals'.*uriel, cldr"):
        distance("fr", "en", "wals")
    with pytest.raises(AdapterError, match="fallback for 'not a language': 'not a language' is not a language code"):
        router.predict(TEXTS[:1], "not a language")
    with pytest.raises(AdapterError, match="nearest: 'average' is not one of: merge, ensemble"):
        router.set_fallback({"*": {"nearest": "average"}})


def test_predict_and_serve_take_a_fallback_map_file(runs, tmp_path, capsys):
    from xft_core.cli.main import main
    from xft_core.cli.serve import build_router

    path = tmp_path / "map.json"
    path.write_text(json.dumps({"fr": {"ensemble": ["de", "ru"]}, "es": "ru"}))
    assert main(["predict", str(runs["bert"]), "phone good", "--language", "fr", "--fallback-map", str(path),
                 "--fallback", "en"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert records[0]["adapter"] == "de+ru" and [m["adapter"] for m in records[0]["ensemble"]] == ["de", "ru"]
    router = build_router(runs["bert"], fallback="en", fallback_map=path)
    assert [p["adapter"] for p in router.predict(TEXTS[:3], ["es", "it", "fr"])] == ["ru", "en", "de+ru"]
