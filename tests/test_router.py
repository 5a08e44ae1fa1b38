"""Hot-swap router on tiny models: mixed-language batches equal each adapter alone, LRU cache with pinning,
memory freed on eviction, language routing and detection, refusals, atomic replace, thread safety."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import weakref
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.adapters import AdapterError
from xft_core.inference.router import BASE, Router
from xft_core.training import train

LANGUAGES = ("en", "de", "ru")
# the tiny data's own vocabulary, so every adapter has learned something about these words
TEXTS = {
    "en": ["phone good", "camera bad", "book great"],
    "de": ["Telefon gut", "Kamera schlecht", "Buch toll"],
    "ru": ["телефон хорошо", "камера плохо", "книга отлично"],
}
# full sentences for language identification
SENTENCES = {
    "en": "The weather is lovely today and the children are playing outside.",
    "de": "Das Wetter ist heute wunderschön und die Kinder spielen draußen.",
    "ru": "Сегодня прекрасная погода, и дети играют на улице.",
}


@pytest.fixture
def lpm(pm):
    import xft_langid

    pm.register(xft_langid, name="xft_langid")
    return pm


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """Tiny trained runs: per-language bert and gemma3, a second `de` version, a multilingual package,
    a fat (r=512) adapter for memory checks and a DoRA run (cannot mix rows in one batch)."""
    import xft_classification
    import xft_full
    import xft_lora
    import xft_metrics
    import xft_samplers
    import xft_sources
    from xft_core.hooks.manager import make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for module in (xft_lora, xft_full, xft_samplers, xft_classification, xft_metrics, xft_sources):
        pm.register(module, name=module.__name__)
    root = tmp_path_factory.mktemp("router")
    data = write_sentiment_data(root / "data", vocabulary=2)

    def run(name, family="bert", **over):
        training = {"max_steps": 12, "learning_rate": 5e-2, **over.pop("training", {})}
        data_section = over.pop("data", {"path": str(data)})
        config = tiny_config(tiny_model(family), data, root / "runs", name=name, sampler="round_robin", training=training, **over)
        config["data"] = data_section
        return train(config, pm=pm, progress=False)

    out = {family: run(family, family, adapters="per_language") for family in ("bert", "gemma3")}
    out["de-v2"] = run("de-v2", adapters="per_language", data={"path": str(data), "train_languages": ["de"]},
                       training={"max_steps": 6, "seed": 99})
    out["multi"] = run("multi", training={"max_steps": 6})
    out["fat"] = run("fat", strategy_options={"r": 512, "alpha": 512}, data={"path": str(data), "train_languages": ["en"]},
                     training={"max_steps": 1})
    out["dora"] = run("dora", adapters="per_language", strategy_options={"r": 4, "alpha": 8, "use_dora": True},
                      training={"max_steps": 4})
    return {name: r.paths.root for name, r in out.items()}


def solo_logits(run_root: Path, language: str, texts: list[str]) -> list[list[float]]:
    """The adapter loaded ALONE, with plain transformers + peft, as any peft user would."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = run_root / "adapters" / language
    manifest = json.loads((folder / "xft.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(manifest["base_model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForSequenceClassification.from_pretrained(
        manifest["base_model"], num_labels=len(manifest["labels"]), pad_token_id=tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(base, str(folder)).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.tolist()


def worst(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def copy_package(source: Path, target: Path, **manifest_changes) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / "xft.json").read_text())
    manifest.update(manifest_changes)
    (target / "xft.json").write_text(json.dumps(manifest))
    return target


# ------------------------------------------------------------------------------------ correctness
@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_switching_adapters_never_walks_the_model_and_answers_like_each_adapter_alone(family, runs, pm, monkeypatch):
    """One language per batch, switching back and forth: each switch only renames the active adapter on the
    adapter layers (peft's set_adapter, a walk over every module, is never called) and every answer equals that
    adapter loaded alone with plain peft."""
    from peft import PeftModel
    from peft.tuners.lora import LoraModel

    router = Router.from_run(runs[family], pm=pm)
    for language in LANGUAGES:
        router.load(language)

    def forbidden(*args, **kwargs):
        raise AssertionError("peft set_adapter walked the model during serving")

    solo = {language: solo_logits(runs[family], language, TEXTS[language]) for language in LANGUAGES}
    monkeypatch.setattr(PeftModel, "set_adapter", forbidden)
    monkeypatch.setattr(LoraModel, "set_adapter", forbidden)
    for language in [*LANGUAGES, *reversed(LANGUAGES), LANGUAGES[0]]:
        predictions = router.predict(TEXTS[language], language)
        assert {p["adapter"] for p in predictions} == {language}
        difference = worst([p["logits"] for p in predictions], solo[language])
        assert difference < 1e-4, f"{family}/{language} after a switch: max |logit difference| {difference:.2e}"


@pytest.mark.parametrize("family", ["bert", "gemma3"])
def test_mixed_language_batch_equals_each_adapter_alone(family, runs, pm, monkeypatch):
    from peft.tuners.lora.layer import Linear

    gathered = []  # peft's gather/scatter path: never taken, the router hands each adapter's rows adjacent
    original = Linear._mixed_batch_forward
    monkeypatch.setattr(Linear, "_mixed_batch_forward", lambda *a, **k: gathered.append(1) or original(*a, **k))
    router = Router.from_run(runs[family], pm=pm)
    texts, languages = [], []
    for i in range(3):  # interleaved, so every language's rows are scattered through the batch
        for language in LANGUAGES:
            texts.append(TEXTS[language][i])
            languages.append(language)
    texts.append("phone lamp")
    languages.append("xx")  # no adapter, no fallback: the bare base model
    predictions = router.predict(texts, languages)
    assert router.stats.forwards == 1, "all languages must share one forward pass"
    assert not gathered, "each adapter's rows must run as one slice of the batch"
    assert predictions[-1]["adapter"] == BASE and predictions[-1]["adapter_version"] is None
    for language in LANGUAGES:
        mine = [p for p in predictions if p["language"] == language]
        assert {p["adapter"] for p in mine} == {language} and {p["adapter_version"] for p in mine} == {1}
        difference = worst([p["logits"] for p in mine], solo_logits(runs[family], language, TEXTS[language]))
        assert difference < 1e-4, f"{family}/{language}: max |logit difference| {difference:.2e}"
        assert set(mine[0]["scores"]) == {"neg", "pos"} and mine[0]["label"] in ("neg", "pos")


def test_bf16_router_runs_under_autocast_and_stays_close_to_full_precision(runs, pm, monkeypatch):
    import torch

    import xft_classification

    seen = []
    real = xft_classification.SequenceClassification.predict_batch

    def spy(self, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xft_classification.SequenceClassification, "predict_batch", spy)
    texts = [TEXTS[language][0] for language in LANGUAGES]
    full = Router.from_run(runs["gemma3"], pm=pm).predict(texts, list(LANGUAGES))
    half = Router.from_run(runs["gemma3"], pm=pm, precision="bf16").predict(texts, list(LANGUAGES))
    assert seen[0][0] is False and seen[-1] == (True, torch.bfloat16)
    assert worst([p["logits"] for p in half], [p["logits"] for p in full]) < 0.1


def test_strategies_that_cannot_mix_rows_run_one_group_per_adapter(runs, pm):
    router = Router.from_run(runs["dora"], pm=pm)
    texts = [TEXTS[lang][i] for i in range(2) for lang in LANGUAGES]
    predictions = router.predict(texts, [lang for _ in range(2) for lang in LANGUAGES])
    assert router.stats.forwards == 3, "DoRA adapters cannot share a forward pass: one per adapter"
    for language in LANGUAGES:
        mine = [p["logits"] for p in predictions if p["adapter"] == language]
        assert worst(mine, solo_logits(runs["dora"], language, TEXTS[language][:2])) < 1e-4


def test_a_batch_needing_more_adapters_than_the_cache_holds_still_answers_right(runs, pm):
    texts = [TEXTS[lang][0] for lang in LANGUAGES] * 2
    languages = list(LANGUAGES) * 2
    wide = Router.from_run(runs["bert"], pm=pm, capacity=8).predict(texts, languages)
    narrow = Router.from_run(runs["bert"], pm=pm, capacity=2)
    assert worst([p["logits"] for p in narrow.predict(texts, languages)], [p["logits"] for p in wide]) < 1e-5
    assert len(narrow.loaded()) == 2 and narrow.stats.forwards == 2


def test_requests_larger_than_one_forward_are_split_by_length_and_put_back_in_order(runs, pm):
    texts = [TEXTS[lang][i] + " " + "gut " * (i * 3 % 7) for i in range(3) for lang in LANGUAGES]
    languages = [lang for _ in range(3) for lang in LANGUAGES]
    whole = Router.from_run(runs["gemma3"], pm=pm, batch_size=32).predict(texts, languages)
    router = Router.from_run(runs["gemma3"], pm=pm, batch_size=4)
    split = router.predict(texts, languages)
    assert [p["adapter"] for p in split] == languages and router.stats.forwards == 3
    assert worst([p["logits"] for p in split], [p["logits"] for p in whole]) < 1e-5
    with pytest.raises(ValueError, match="2 values for 9 texts"):
        router.predict(texts[:9], ["en", "de"])


# ------------------------------------------------------------------------------------------- cache
def test_lru_eviction_order_and_pinning(runs, pm, tmp_path):
    router = Router.from_run(runs["bert"], pm=pm, capacity=2)
    router.register("multi", runs["multi"] / "adapters" / "multilingual")
    router.register("en2", copy_package(runs["bert"] / "adapters" / "en", tmp_path / "en2"))
    assert len(router.registered()) == 5 and router.loaded() == []
    router.load("de"), router.load("en")
    assert router.loaded() == ["de", "en"]
    router.load("ru")  # evicts de, the least recently used
    assert router.loaded() == ["en", "ru"]
    router.load("en")  # a hit moves en to the most recent end
    assert router.loaded() == ["ru", "en"]
    router.load("multi")
    assert router.loaded() == ["en", "multi"]
    router.pin("en")
    router.load("en2"), router.load("de"), router.load("ru")
    assert router.loaded() == ["en", "ru"], "the pinned adapter stays whatever the traffic"
    assert router.stats.as_dict()["evictions"] == 5 and router.stats.hits == 2 and router.stats.misses == 7
    router.pin("ru")
    with pytest.raises(AdapterError, match="pinned"):
        router.load("de")
    with pytest.raises(AdapterError, match="pinned"):
        router.pin("de")
    with pytest.raises(AdapterError, match="pinned"):
        router.predict([TEXTS["de"][0]], "de")
    assert router.predict([TEXTS["en"][0]], "en")[0]["adapter"] == "en", "pinned adapters still serve"
    router.unpin("ru")
    assert router.predict([TEXTS["de"][0]], "de")[0]["adapter"] == "de"
    assert router.loaded() == ["en", "de"] and router.pinned() == ["en"]
    with pytest.raises(AdapterError, match="unpin"):
        router.unload("en")
    router.unpin("en"), router.unload("en"), router.unload("de")
    assert router.loaded() == [] and router.model is router.base.model, "with no adapter left the base runs bare again"
    assert not hasattr(router.model, "peft_config")
    assert router.predict([TEXTS["de"][0]], "de")[0]["adapter"] == "de", "and takes adapters again afterwards"


def _rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


def test_eviction_really_frees_memory(runs, pm, tmp_path):
    fat = runs["fat"] / "adapters" / "en"
    router = Router(fat, pm=pm, capacity=2)
    names = ["a", "b", "c"]
    for name in names:
        router.register(name, copy_package(fat, tmp_path / name))
    router.load("a")
    lora = [p for n, p in router.model.named_parameters() if ".a__v1." in n]
    per_adapter = sum(p.numel() * p.element_size() for p in lora)
    assert per_adapter > 1_000_000, "the adapter must be big enough for a leak to show in the RSS"
    probes = [weakref.ref(p) for p in lora]
    del lora
    rss_after_10 = None
    for cycle in range(200):  # capacity 2, three adapters in turn: every load evicts one
        router.load(names[cycle % 3])
        if cycle == 9:
            rss_after_10 = _rss()
    rss_after_200 = _rss()
    assert router.stats.evictions >= 198
    assert all(probe() is None for probe in probes), "evicted adapter tensors are still referenced somewhere"
    peft_names = set(router.model.peft_config)
    assert peft_names == {entry.slot for entry in router.cache.loaded.values()} and len(peft_names) == 2
    modules_with_adapters = {n.split(".")[-1] for n, _ in router.model.named_modules() if "__v" in n.split(".")[-1]}
    assert modules_with_adapters <= peft_names
    # Bound: 25 MB. A leak of the adapter tensors alone would grow the RSS by 190 x per_adapter (> 190 MB here);
    # a leak of only peft's Python bookkeeping (configs, module dicts) would add a few tens of kB per cycle.
    # 25 MB leaves room for allocator noise (glibc arenas, the first-use growth of torch's caches) while
    # staying an order of magnitude below what one leaked adapter per cycle would cost.
    growth = rss_after_200 - rss_after_10
    print(f"\nRSS after 10 cycles {rss_after_10 / 2**20:.1f} MiB, after 200 {rss_after_200 / 2**20:.1f} MiB, "
          f"growth {growth / 2**20:+.2f} MiB; adapter {per_adapter / 2**20:.2f} MiB")
    assert growth < 25 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 190 load/evict cycles"


# -------------------------------------------------------------------------------------- routing
def test_unknown_language_goes_to_the_fallback_or_the_base(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm)
    assert router.predict([TEXTS["en"][0]], "fr")[0]["adapter"] == BASE
    router.fallback = "en"
    out = router.predict([TEXTS["en"][0], TEXTS["de"][0]], ["fr", "de"])
    assert [p["adapter"] for p in out] == ["en", "de"] and out[0]["language"] == "fr"
    assert worst([out[0]["logits"]], [router.predict([TEXTS["en"][0]], "en")[0]["logits"]]) < 1e-6
    explicit = router.predict([TEXTS["de"][0]] * 2, "de", adapters=["ru", BASE])
    assert [p["adapter"] for p in explicit] == ["ru", BASE]
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        router.predict(["x"], adapters="nope")
    with pytest.raises(AdapterError, match="fallback adapter 'zz'"):
        Router.from_run(runs["bert"], pm=pm, fallback="zz")


def test_a_multilingual_package_serves_every_language_without_its_own(runs, pm):
    router = Router.from_run(runs["multi"], pm=pm)
    assert router.routes() == {"en": "multilingual", "de": "multilingual", "ru": "multilingual"}
    router.register("de", runs["bert"] / "adapters" / "de")
    assert router.routes() == {"en": "multilingual", "de": "de", "ru": "multilingual"}
    out = router.predict([TEXTS["en"][0], TEXTS["de"][0]], ["en", "de"])
    assert [p["adapter"] for p in out] == ["multilingual", "de"]


def test_auto_language_detection_picks_the_right_adapter(runs, lpm):
    router = Router.from_run(runs["bert"], pm=lpm)
    texts = [SENTENCES[lang] for lang in LANGUAGES]
    assert [p["adapter"] for p in router.predict(texts, "auto")] == list(LANGUAGES)
    assert [p["language"] for p in router.predict(texts, [None, "auto", "de"])] == ["en", "de", "de"]


def test_auto_without_a_language_identification_plugin_is_a_clear_error(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm)
    with pytest.raises(AdapterError, match="xft_detect_language.*xft_langid"):
        router.predict(["hello"], "auto")


def test_langid_answers_in_the_candidates_own_scheme():
    import xft_langid

    sentences = {**SENTENCES, "es": "¿Dónde está la estación de autobuses más cercana?", "zh": "我们明天去图书馆学习。"}
    three = {"en": "eng", "de": "deu_Latn", "ru": "rus", "es": "spa", "zh": "zho_Hans"}
    for language, text in sentences.items():
        assert xft_langid.detect(text) == language
        assert xft_langid.detect(text, list(three.values())) == three[language]
        assert xft_langid.detect(text, list(three)) == language
    assert xft_langid.detect(SENTENCES["de"], ["en", "fr"]) in ("en", "fr"), "candidates restrict the answer"
    assert xft_langid.detect("   ", ["en"]) is None and xft_langid.detect("x", ["tlh"]) is None
    assert xft_langid.to_label("arb_Arab") == "ar" and xft_langid.to_label("zho_Hans") == "zh"


# ------------------------------------------------------------------------------------- refusals
def test_a_package_for_another_base_model_is_refused(runs, pm, tmp_path):
    router = Router.from_run(runs["bert"], pm=pm)
    tampered = copy_package(runs["bert"] / "adapters" / "de", tmp_path / "de", base_fingerprint="0" * 64)
    with pytest.raises(AdapterError, match="different base model"):
        router.register("de-tampered", tampered)
    router.load("de")
    with pytest.raises(AdapterError, match="different base model"):
        router.replace("de", tampered)
    assert router.adapter_version("de") == 1 and router.predict([TEXTS["de"][0]], "de")[0]["adapter_version"] == 1
    relabelled = copy_package(runs["bert"] / "adapters" / "ru", tmp_path / "ru", labels=["a", "b", "c"])
    with pytest.raises(AdapterError, match="label set"):
        router.register("ru-3", relabelled)
    whole = copy_package(runs["bert"] / "adapters" / "ru", tmp_path / "full", strategy="full", strategy_options={})
    with pytest.raises(AdapterError, match="cannot be hot-swapped"):
        router.register("ru-full", whole)


@pytest.mark.parametrize("name", ["adapter_model.BIN", "sub/evil.pt", "deep/er/x.Pkl"])
def test_pickle_files_are_refused_in_any_case_and_any_sub_folder(runs, pm, tmp_path, name):
    """Only top-level lower-case names were refused: `adapter_model.BIN` and `sub/evil.pt` loaded with 200."""
    router = Router.from_run(runs["bert"], pm=pm)
    package = copy_package(runs["bert"] / "adapters" / "en", tmp_path / "en")
    (package / name).parent.mkdir(parents=True, exist_ok=True)
    (package / name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(AdapterError, match=f"holds pickle files \\({name}\\)"):
        router.register("en-bin", package)


def test_a_package_holding_a_pickle_file_is_refused(runs, pm, tmp_path):
    router = Router.from_run(runs["bert"], pm=pm)
    package = copy_package(runs["bert"] / "adapters" / "en", tmp_path / "en")
    (package / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(AdapterError, match="pickle"):
        router.register("en-bin", package)
    with pytest.raises(FileNotFoundError):
        router.register("gone", tmp_path / "nothing-here")
    with pytest.raises(AdapterError, match="adapter name"):
        router.register("de.v2", runs["bert"] / "adapters" / "de")
    with pytest.raises(AdapterError, match="already registered"):
        router.register("de", runs["bert"] / "adapters" / "de")


# -------------------------------------------------------------------------------------- replace
def test_replace_bumps_the_version_and_the_new_weights_answer(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm)
    texts = TEXTS["de"]
    before = router.predict(texts, "de")
    assert worst([p["logits"] for p in before], solo_logits(runs["bert"], "de", texts)) < 1e-4
    assert router.replace("de", runs["de-v2"] / "adapters" / "de") == 2
    after = router.predict(texts + TEXTS["en"], ["de"] * 3 + ["en"] * 3)
    assert {p["adapter_version"] for p in after[:3]} == {2} and router.adapter_version("de") == 2
    assert worst([p["logits"] for p in after[:3]], solo_logits(runs["de-v2"], "de", texts)) < 1e-4
    assert worst([p["logits"] for p in after[:3]], [p["logits"] for p in before]) > 1e-3
    assert sorted(router.model.peft_config) == ["de__v2", "en__v1"], "the old version's weights are gone"
    router.unload("de")
    assert router.replace("de", runs["bert"] / "adapters" / "de") == 3, "replacing an unloaded adapter is lazy"
    again = router.predict(texts, "de")
    assert {p["adapter_version"] for p in again} == {3}
    assert worst([p["logits"] for p in again], [p["logits"] for p in before]) < 1e-5


def test_concurrent_predictions_during_replaces_always_match_their_version(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm)
    text = TEXTS["de"][0]
    expected = {1: solo_logits(runs["bert"], "de", [text])[0], 2: solo_logits(runs["de-v2"], "de", [text])[0]}
    folders = {1: runs["bert"] / "adapters" / "de", 2: runs["de-v2"] / "adapters" / "de"}
    errors: list[str] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            for p in router.predict([text, TEXTS["en"][0]], ["de", "en"])[:1]:
                content = (1 if abs(p["logits"][0] - expected[1][0]) < 1e-4
                           else 2 if abs(p["logits"][0] - expected[2][0]) < 1e-4 else 0)
                if content == 0 or (p["adapter_version"] % 2 == 1) != (content == 1):
                    errors.append(f"version {p['adapter_version']} answered with logits {p['logits']}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for version in range(2, 12):
            router.replace("de", folders[2 if version % 2 == 0 else 1])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert router.adapter_version("de") == 11 and sorted(router.model.peft_config) == ["de__v11", "en__v1"]


# ----------------------------------------------------------------------------- all-or-nothing loads
def _truncate(folder: Path) -> None:
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _rewrite(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    weights = folder / "adapter_model.safetensors"
    save_file(change(load_file(weights)), weights)


def _grow_lora_a(tensors):  # every lora_A one row longer: the shapes do not fit the model
    import torch

    return {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if "lora_A" in k else v for k, v in tensors.items()}


def _rename_lora_a(tensors):  # keys the model has no place for, and its own missing
    return {k.replace("lora_A", "lora_Q"): v for k, v in tensors.items()}


def _overwrite_base(folder: Path) -> None:  # loads fine with plain peft, and writes into the SHARED base embeddings
    import torch

    base = json.loads((folder / "xft.json").read_text())["base_model"]
    config = json.loads((Path(base) / "config.json").read_text())
    zeros = torch.zeros(config["vocab_size"], config["hidden_size"])
    _rewrite(folder, lambda tensors: {**tensors, "base_model.model.bert.embeddings.word_embeddings.weight": zeros})


CORRUPTIONS = {
    "truncated": _truncate,
    "wrong shapes": lambda folder: _rewrite(folder, _grow_lora_a),
    "wrong keys": lambda folder: _rewrite(folder, _rename_lora_a),
    "writes the base": _overwrite_base,
}


def _state(router: Router) -> dict:
    """Everything a failed load must leave as it was: outputs to the bit (every loaded adapter and the bare base),
    the loaded set, the registry and its versions, the model's modules."""
    loaded = router.loaded()  # in LRU order, before the predict below touches them
    names = sorted(loaded) + [BASE]
    texts = [TEXTS[lang][i] for i in range(2) for lang in LANGUAGES][: len(names) * 2]
    adapters = [names[i % len(names)] for i in range(len(texts))]
    outputs = router.predict(texts, adapters=adapters)
    return {"logits": [p["logits"] for p in outputs], "loaded": loaded, "stats": router.stats.loads,
            "registry": {n: (str(f), router.adapter_version(n), router.adapter_hash(n)) for n, f in router.registered().items()},
            "modules": [n for n, _ in router.model.named_modules()], "model": id(router.model)}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("loaded", [(), ("en", "ru")], ids=["bare base", "cache full"])
def test_a_failed_load_leaves_the_router_exactly_as_it_was(corruption, loaded, runs, pm, tmp_path):
    from xft_core.inference.packages import AdapterLoadError

    router = Router.from_run(runs["bert"], pm=pm, capacity=2)
    for name in loaded:
        router.load(name)
    bad = copy_package(runs["bert"] / "adapters" / "de", tmp_path / "bad")
    CORRUPTIONS[corruption](bad)
    before = _state(router)
    base_modules = [n for n, _ in router.base.model.named_modules()]
    attempts = {
        "register + load": lambda: (router.register("bad", bad), router.load("bad")),
        "replace, eager": lambda: router.replace("en", bad, load=True),
        "replace of a lazily registered copy": lambda: (router.replace("de", bad), router.predict(["x"], adapters="de")),
    }
    for what, attempt in attempts.items():
        saved = router.registered().get("de"), router.adapter_version("de")
        with pytest.raises(AdapterLoadError, match="adapter_model.safetensors") as caught:
            attempt()
        assert str(bad) in str(caught.value) and "xft-adapter-" not in str(caught.value), "names the package, not the copy"
        if what == "register + load":
            assert "bad" in router.registered(), "register validates the manifest only; the load is what failed"
            router.unregister("bad")
        if what.startswith("replace of a lazily"):
            router.replace("de", saved[0])  # the lazy replace itself succeeded (a version counted); put it back
            router.stats.loads, router.stats.failed_loads = before["stats"], 0
            before["registry"]["de"] = (str(saved[0]), router.adapter_version("de"), router.adapter_hash("de"))
        after = _state(router)
        assert after == before, f"{what}: the router changed"
    assert [n for n, _ in router.base.model.named_modules()] == base_modules, "no layer injected into the base stays"
    if not loaded:
        assert router.model is router.base.model and not hasattr(router.model, "peft_config")


def test_a_package_that_changed_on_disk_while_evicted_comes_back_as_a_new_version(runs, pm, tmp_path):
    from xft_core.inference.packages import content_hash

    folder = copy_package(runs["bert"] / "adapters" / "de", tmp_path / "de")
    router = Router(folder, pm=pm, capacity=1)
    router.register("de", folder)
    router.register("en", runs["bert"] / "adapters" / "en")
    first = router.predict(TEXTS["de"], adapters="de")
    hash_1 = content_hash(folder)
    assert {(p["adapter_version"], p["adapter_hash"]) for p in first} == {(1, hash_1)} and len(hash_1) == 12
    assert worst([p["logits"] for p in first], solo_logits(runs["bert"], "de", TEXTS["de"])) < 1e-4

    router.load("en")  # capacity 1: `de` is evicted
    for file in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(runs["de-v2"] / "adapters" / "de" / file, folder / file)
    assert router.adapter_hash("de") == hash_1, "nothing is read until the adapter loads again"
    second = router.predict(TEXTS["de"], adapters="de")
    hash_2 = content_hash(folder)
    assert hash_2 != hash_1 and {(p["adapter_version"], p["adapter_hash"]) for p in second} == {(2, hash_2)}
    assert worst([p["logits"] for p in second], solo_logits(runs["de-v2"], "de", TEXTS["de"])) < 1e-4
    assert (router.adapter_version("de"), router.adapter_hash("de")) == (2, hash_2)

    router.load("en")
    shutil.rmtree(folder)
    copy_package(runs["bert"] / "adapters" / "de", folder)  # the first content again: its hash, a new version
    third = router.predict(TEXTS["de"], adapters="de")
    assert {(p["adapter_version"], p["adapter_hash"]) for p in third} == {(3, hash_1)}
    assert worst([p["logits"] for p in third], [p["logits"] for p in first]) < 1e-6, "the first content scores as it did"
    assert router.replace("de", folder) == 4 and router.adapter_hash("de") == hash_1, "a replace always counts on"


def test_a_package_holding_a_symbolic_link_is_refused(runs, pm, tmp_path):
    router = Router.from_run(runs["bert"], pm=pm)
    package = copy_package(runs["bert"] / "adapters" / "de", tmp_path / "de")
    (package / "adapter_model.safetensors").unlink()
    (package / "adapter_model.safetensors").symlink_to(runs["bert"] / "adapters" / "de" / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="symbolic link"):
        router.register("linked", package)


def test_the_fallback_adapter_cannot_be_unregistered(runs, pm):
    router = Router.from_run(runs["bert"], pm=pm, fallback="en")
    with pytest.raises(AdapterError, match="fallback"):
        router.unregister("en")
    assert "en" in router.registered() and router.predict([TEXTS["en"][0]], "fr")[0]["adapter"] == "en"
    router.unregister("de")
    assert router.predict([TEXTS["de"][0]], "de")[0]["adapter"] == "en", "its languages go to the fallback"


def test_capacity_one_serves_mixed_batches_one_adapter_at_a_time(runs, pm):
    texts = [TEXTS[lang][i] for i in range(2) for lang in LANGUAGES] + ["lamp"]
    languages = [lang for _ in range(2) for lang in LANGUAGES] + ["xx"]
    router = Router.from_run(runs["bert"], pm=pm, capacity=1)
    narrow = router.predict(texts, languages)
    base_alone = router.predict(["lamp"], adapters=BASE)[0]["logits"]  # the base head is the same router's
    assert router.loaded() == ["ru"] and router.stats.forwards == 4
    wide = Router.from_run(runs["bert"], pm=pm, capacity=8).predict(texts[:-1], languages[:-1])
    assert worst([p["logits"] for p in narrow[:-1]], [p["logits"] for p in wide]) < 1e-5
    assert worst([narrow[-1]["logits"]], [base_alone]) < 1e-6
    assert [p["adapter_version"] for p in narrow] == [1] * 6 + [None]


def test_adapters_given_by_a_relative_path_are_listed_with_absolute_paths(runs, pm, monkeypatch):
    """`xft serve runs/x` listed runs/x/adapters/en, while docs/security.md says listings and PUT use absolute paths."""
    from xft_core.inference.admin import describe

    monkeypatch.chdir(runs["bert"].parent)
    router = Router.from_run(runs["bert"].name, pm=pm)
    assert all(folder.is_absolute() and folder.is_dir() for folder in router.registered().values())
    listed = [row["path"] for row in describe(router)["adapters"].values()]
    assert listed and all(Path(path).is_absolute() for path in listed), listed
