"""A strategy that is not peft, written here as any third-party plugin would write it: BitFit (only the biases
train, with the new task head), saved and loaded by the strategy itself. It trains, evaluates (transfer matrix)
and serves (router, one adapter group per forward because it cannot mix rows), single and per language, through
the `Strategy` protocol alone; and neither the core nor this run needs peft."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from conftest import near_ties, same_labels_but_near_ties, tiny_config, write_sentiment_data
from xft_core.hooks import StrategySpec, TaskHead, hookimpl

LANGUAGES = ["de", "en", "ru"]
ROOT = Path(__file__).resolve().parents[1]


# ============================================================================================ the plugin
BANK = "xft_bitfit"  # training, per language: the model's submodule holding one parameter copy per adapter
ATTACHED = "_xft_bitfit_attached"  # inference: plain attribute of the model holding the attached adapters' tensors
WEIGHTS = "bitfit.safetensors"


@dataclass(frozen=True, kw_only=True)
class BitFitOptions:
    norm_biases: bool = True  # also train the biases of normalisation layers (LayerNorm.bias)


def _key(name: str) -> str:
    return name.replace(".", "-")  # parameter names may not contain dots


def _slot(adapter: str) -> str:
    return f"adapter-{adapter}"  # a prefix, so that no adapter name can clash with a ModuleDict attribute


def _plain(model: Any) -> dict[str, Any]:
    """Every parameter by the name it has in the plain base model (the module slots, not the bank)."""
    return {n: p for n, p in model.named_parameters(remove_duplicate=False) if not n.startswith(BANK + ".")}


def _owner(model: Any, name: str) -> tuple[Any, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


def _bank(model: Any) -> Any:
    return model._modules.get(BANK)


def _write(model: Any, values: dict[str, Any]) -> None:
    import torch

    params = _plain(model)
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)


def _read(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    file = Path(folder) / WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS} (a bitfit package)")
    try:
        return load_file(str(file), device="cpu")
    except Exception as exc:
        raise ValueError(f"{folder}: cannot read {WEIGHTS} ({type(exc).__name__}: {exc})") from None


def _check_fits(tensors: dict[str, Any], params: dict[str, Any], folder: Path, allowed: Sequence[str] | None = None) -> None:
    if not tensors:
        raise ValueError(f"{folder}: {WEIGHTS} holds no tensors")
    allowed_set = set(params if allowed is None else allowed)
    unknown = [k for k in tensors if k not in allowed_set or k not in params]
    if unknown:
        raise ValueError(f"{folder}: weights do not fit this model (unknown: {', '.join(unknown[:5])})")
    wrong = [k for k, v in tensors.items() if tuple(v.shape) != tuple(params[k].shape)]
    if wrong:
        raise ValueError(f"{folder}: weights do not fit this model (shape differs: {', '.join(wrong[:5])})")


class BitFit:
    """Training single: the model's own biases and head train in place. Training per language: a bank of parameter
    copies (one per adapter) is registered on the model, and `activate` points the modules' slots at the active
    adapter's `nn.Parameter` objects, so gradients reach that copy only. Inference: `attach` keeps an adapter's
    tensors aside, `activate` copies them into the model, the base's own values are kept to come back to."""

    mixed_batch = False

    def __init__(self, options: BitFitOptions):
        self.options = options
        self._names: list[str] = []  # single training: what trains (names of the plain model)
        self._originals: dict[str, Any] = {}  # single training: the base's values of those

    def trainable_names(self, model: Any, head: TaskHead) -> list[str]:
        heads = set(head.head_modules(model))
        names = []
        for name in _plain(model):
            parts = name.split(".")
            in_head = any(part in heads for part in parts[:-1])
            bias = parts[-1] == "bias" and (self.options.norm_biases
                                            or "norm" not in type(_owner(model, name)[0]).__name__.lower())
            if in_head or bias:
                names.append(name)
        return names

    # ------------------------------------------------------------------------------------------ training
    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        import torch

        names = self.trainable_names(model, head)
        if not names:
            raise ValueError("bitfit: the model has neither biases nor task-head weights to train")
        params = _plain(model)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self._names = names
        self._originals = {n: params[n].detach().clone() for n in names}
        if adapters is None:
            for name in names:
                params[name].requires_grad_(True)
            return model
        bank = torch.nn.ModuleDict({
            _slot(a): torch.nn.ParameterDict({_key(n): torch.nn.Parameter(params[n].detach().clone()) for n in names})
            for a in adapters
        })
        bank.xft_names = list(names)  # plain attributes: not parameters, not in the state dict
        bank.xft_originals = dict(self._originals)
        # first among the model's children, so that named_parameters() (which names a shared tensor once, by the
        # first path met) names every adapter's copy by its bank path whichever adapter is active: checkpoints are
        # saved and restored by those names
        children = dict(model._modules)
        model._modules.clear()
        model._modules[BANK] = bank
        model._modules.update(children)
        self.activate(model, adapters[0])
        return model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        bank = _bank(model)
        if bank is not None:
            if adapter is None or _slot(adapter) not in bank:
                raise KeyError(f"bitfit: no adapter {adapter!r} (have: {', '.join(k.split('-', 1)[1] for k in bank)})")
            copies = bank[_slot(adapter)]
            for name in bank.xft_names:
                owner, leaf = _owner(model, name)
                setattr(owner, leaf, copies[_key(name)])  # the module now computes with this adapter's Parameter
            return
        state = model.__dict__.get(ATTACHED)
        if state is None:
            if adapter is None:
                return  # one set of weights: the model's own
            raise KeyError(f"bitfit: no adapter '{adapter}' attached")
        if adapter is None:
            _write(model, state["base"])
            state["active"] = None
            return
        if adapter not in state["adapters"]:
            raise KeyError(f"bitfit: no adapter '{adapter}' attached (have: {', '.join(state['adapters'])})")
        if state["active"] != adapter:
            _write(model, {**state["base"], **state.get("scaled", {}).get(adapter, state["adapters"][adapter])})
            state["active"] = adapter

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        import torch

        tensors = _read(folder)
        bank = _bank(model)
        _check_fits(tensors, _plain(model), folder, bank.xft_names if bank is not None else self._names)
        with torch.no_grad():
            if bank is None:
                _write(model, tensors)
                return
            for adapter in adapters:
                for name, value in tensors.items():
                    bank[_slot(adapter)][_key(name)].copy_(value)

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:
        from safetensors.torch import save_file

        bank = _bank(model)
        if bank is not None:
            if adapter is None:
                raise ValueError("bitfit: this model holds one set of weights per adapter; name the one to save")
            tensors = {n: bank[_slot(adapter)][_key(n)] for n in bank.xft_names}
        else:
            params = _plain(model)
            tensors = {n: params[n] for n in self._names or self.trainable_names(model, head)}
        save_file({n: t.detach().to("cpu").contiguous().clone() for n, t in tensors.items()}, str(Path(folder) / WEIGHTS),
                  metadata={"format": "pt", "strategy": "bitfit"})

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        tensors = _read(Path(folder))
        params = _plain(model)
        _check_fits(tensors, params, Path(folder))
        state = model.__dict__.get(ATTACHED)
        if state is not None and name in state["adapters"]:
            raise ValueError(f"bitfit: an adapter named '{name}' is already attached")
        placed = {k: v.to(device=params[k].device, dtype=params[k].dtype) for k, v in tensors.items()}
        # checked and converted: nothing below can fail, so a failed attach has changed nothing
        if state is None:
            state = model.__dict__[ATTACHED] = {"base": {}, "adapters": {}, "active": None}
        for key in placed:
            # only keys already in `base` were ever overwritten, so any other key still holds the base's value
            state["base"].setdefault(key, params[key].detach().clone())
        state["adapters"][name] = placed
        return model

    def detach(self, model: Any, name: str) -> Any:
        state = model.__dict__.get(ATTACHED)
        if state is None or name not in state["adapters"]:
            raise KeyError(f"bitfit: no adapter '{name}' attached")
        if state["active"] == name:
            _write(model, state["base"])
            state["active"] = None
        del state["adapters"][name]
        state.get("scaled", {}).pop(name, None)
        if not state["adapters"]:
            del model.__dict__[ATTACHED]  # the base's values are in place; forget everything
        return model

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """The attached adapter's values interpolated toward the base's: base + factor * (adapter - base)."""
        state = model.__dict__[ATTACHED]
        values = {k: state["base"][k] + factor * (v - state["base"][k]) for k, v in state["adapters"][adapter].items()}
        state.setdefault("scaled", {})[adapter] = values
        if state["active"] == adapter:
            _write(model, {**state["base"], **values})

    @contextlib.contextmanager
    def base_only(self, model: Any) -> Iterator[Any]:
        import torch

        bank = _bank(model)
        if bank is not None:  # per-language training: point the slots at frozen copies of the base's values
            current = {n: _plain(model)[n] for n in bank.xft_names}
            for name in bank.xft_names:
                owner, leaf = _owner(model, name)
                original = bank.xft_originals[name].to(current[name].device)
                setattr(owner, leaf, torch.nn.Parameter(original.clone(), requires_grad=False))
            try:
                yield model
            finally:
                for name, parameter in current.items():
                    owner, leaf = _owner(model, name)
                    setattr(owner, leaf, parameter)
            return
        state = model.__dict__.get(ATTACHED)
        base = state["base"] if state is not None and state["active"] is not None else self._originals if self._names else {}
        params = _plain(model)
        saved = {k: params[k].detach().clone() for k in base}
        _write(model, base)
        try:
            yield model
        finally:
            _write(model, saved)

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("bitfit: one set of biases per forward; rows of different adapters cannot mix")

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """The attached adapter's biases (and head) copied into the model's own parameters, the attachment forgotten."""
        self.activate(model, adapter)  # writes base + adapter values (scaled, if `scale` was called) into the model
        model.__dict__.pop(ATTACHED, None)
        return model.eval()


class BitFitPlugin:
    @hookimpl
    def xft_strategies(self):
        yield StrategySpec(
            name="bitfit",
            options=BitFitOptions,
            build=BitFit,
            per_language=True,
            stackable=True,
            description="BitFit: only the biases (and the new task head) train; saved as bitfit.safetensors.",
        )


# ============================================================================================== helpers
@pytest.fixture
def bpm(pm):
    pm.register(BitFitPlugin(), name="bitfit-test-plugin")
    return pm


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory) -> Path:
    return write_sentiment_data(tmp_path_factory.mktemp("bitfit-data"), vocabulary=2)


def bitfit_config(model: Path, data: Path, out: Path, **over) -> dict:
    return tiny_config(model, data, out, strategy="bitfit", strategy_options={}, **over)


def dataset_loss(run) -> float:
    """Mean loss over every training example of every language, eval mode, each language through its adapter."""
    import torch

    model = run.accelerator.unwrap_model(run.model)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for language, features in run.features.items():
            run.strategy.activate(model, run.adapter_for(language))
            batch = run.head.collate(features, run.tokenizer)
            total += float(model(**batch).loss) * len(features)
            count += len(features)
    return total / count


def expected_names(model: Any) -> set[str]:
    """BitFit's parameters, by the test's own rule: every bias and everything of the classification head."""
    return {n for n in _plain(model) if n.endswith(".bias") or n.split(".")[0] in ("classifier", "score")}


def dev_rows(data: Path, language: str) -> list[dict]:
    return [json.loads(line) for line in (data / f"{language}.dev.jsonl").read_text(encoding="utf-8").splitlines()]


def by_hand(package: Path, pm: Any, rows: list[dict]) -> list[dict]:
    """The package's predictions without the strategy: a fresh base, its file loaded by plain names, predict_rows."""
    from safetensors.torch import load_file

    from xft_core.adapters import load_base
    from xft_core.evaluation.predict import predict_rows

    base = load_base(package, pm)
    result = base.model.load_state_dict(load_file(str(package / WEIGHTS)), strict=False)
    assert not result.unexpected_keys, f"{WEIGHTS} names are not the plain model's: {result.unexpected_keys[:3]}"
    return predict_rows(base.head, base.model, base.tokenizer, rows, batch_size=32, max_length=128)


def worst(a: list[dict], b: list[dict]) -> float:
    return max(abs(x - y) for pa, pb in zip(a, b) for x, y in zip(pa["logits"], pb["logits"]))


def assert_no_peft(model: Any) -> None:
    assert not hasattr(model, "peft_config")
    peft_modules = {type(m).__module__ for m in model.modules() if type(m).__module__.split(".")[0] == "peft"}
    assert not peft_modules, f"peft classes in the model: {peft_modules}"


# ================================================================================================ tests
@pytest.mark.parametrize("family", ["bert", "qwen2"])  # gemma3 has no biases at all: qwen2 is the decoder with some
def test_single_bitfit_trains_only_biases_and_head_then_evaluates_and_serves(family, tiny_model, easy_data, tmp_path, bpm):
    import torch
    from safetensors.torch import load_file

    from xft_core.config import load_config
    from xft_core.evaluation import transfer_matrix
    from xft_core.evaluation.predict import score
    from xft_core.inference.router import Router
    from xft_core.training import prepare, train

    config = bitfit_config(tiny_model(family), easy_data, tmp_path, training={"max_steps": 16, "learning_rate": 5e-2})
    start = prepare(load_config(config), pm=bpm)
    initial = {n: p.detach().clone() for n, p in start.model.named_parameters()}
    expected = expected_names(start.model)
    assert any(n.split(".")[0] not in ("classifier", "score") for n in expected), "the body must have biases to train"
    assert {n for n, p in start.model.named_parameters() if p.requires_grad} == expected
    before = dataset_loss(start)

    run = train(config, pm=bpm, progress=False)
    after = dataset_loss(run)
    assert after < before - 0.02, f"loss did not fall: {before:.4f} -> {after:.4f}"
    model = run.unwrapped_model()
    assert_no_peft(model)
    assert run.trainable_parameters == sum(initial[n].numel() for n in expected)
    trained = dict(model.named_parameters())
    changed = {n for n in initial if not torch.equal(initial[n], trained[n])}
    assert changed <= expected, f"frozen tensors changed: {sorted(changed - expected)[:3]}"
    assert any(n.split(".")[0] in ("classifier", "score") for n in changed), "the head did not train"
    assert any(n.split(".")[0] not in ("classifier", "score") for n in changed), "no body bias trained"

    package = run.paths.adapters / "multilingual"
    assert sorted(p.name for p in package.iterdir()) == [WEIGHTS, "xft.json"]  # no adapter_config.json, no peft file
    saved = load_file(str(package / WEIGHTS))
    assert set(saved) == expected and all(torch.equal(saved[n], trained[n]) for n in expected)
    manifest = json.loads((package / "xft.json").read_text())
    assert manifest["strategy"] == "bitfit" and manifest["languages"] == LANGUAGES

    # evaluation: every language's cell equals scoring a by-hand prediction of the same rows
    matrix = transfer_matrix(run.paths.root, easy_data, split="dev", pm=bpm, progress=False)
    (row,) = matrix.rows
    assert row.kind == "adapter" and set(row.cells) == set(LANGUAGES)
    router = Router.from_run(run.paths.root, pm=bpm)
    for language in LANGUAGES:
        rows = dev_rows(easy_data, language)
        expected_predictions = by_hand(package, bpm, rows)
        exact = not near_ties(expected_predictions)  # else a tie may break either way (same_labels_but_near_ties)
        assert row.cells[language] == score(router.base.head, bpm, expected_predictions, rows) or not exact
        # serving: the router answers each row as the by-hand prediction does, so it scores the matrix's cell
        served = router.predict([r["text"] for r in rows], language)
        assert {p["adapter"] for p in served} == {"multilingual"}
        assert same_labels_but_near_ties(served, expected_predictions)
        assert worst(served, expected_predictions) < 1e-5
        assert score(router.base.head, bpm, served, rows) == row.cells[language] or not exact
    assert_no_peft(router.model)
    assert not hasattr(router.base.model, "peft_config")


def test_per_language_bitfit_adapters_train_apart_evaluate_and_serve_one_group_per_forward(tiny_model, easy_data, tmp_path, bpm):
    import torch
    from safetensors.torch import load_file, save_file

    from xft_core.config import load_config
    from xft_core.evaluation import transfer_matrix
    from xft_core.evaluation.predict import score
    from xft_core.inference.router import BASE, Router
    from xft_core.training import prepare, train

    config = bitfit_config(tiny_model("bert"), easy_data, tmp_path, adapters="per_language", sampler="round_robin",
                           training={"max_steps": 18, "learning_rate": 5e-2})
    start = prepare(load_config(config), pm=bpm)
    plain = _plain(start.model)
    expected = expected_names(start.model)
    frozen = {n: p.detach().clone() for n, p in plain.items() if n not in expected}
    per_adapter = sum(plain[n].numel() for n in expected)
    assert start.trainable_parameters == 3 * per_adapter, "one copy of the biases and head per language"
    names = [n for n, p in start.model.named_parameters() if p.requires_grad]
    start.strategy.activate(start.model, "ru")
    assert [n for n, p in start.model.named_parameters() if p.requires_grad] == names, "names must not follow the active adapter"
    assert all(n.startswith(BANK + ".") for n in names)
    before = dataset_loss(start)

    run = train(config, pm=bpm, progress=False)
    assert dataset_loss(run) < before - 0.02
    model = run.unwrapped_model()
    assert_no_peft(model)
    assert all(torch.equal(frozen[n], p) for n, p in _plain(model).items() if n in frozen), "a frozen tensor changed"
    assert sorted(run.adapter_dirs) == LANGUAGES
    packages = {lang: run.paths.adapters / lang for lang in LANGUAGES}
    weights = {}
    for language, package in packages.items():
        assert sorted(p.name for p in package.iterdir()) == [WEIGHTS, "xft.json"]
        weights[language] = load_file(str(package / WEIGHTS))
        assert set(weights[language]) == expected
        assert any(not torch.equal(weights[language][n], start.strategy._originals[n])
                   for n in expected), f"{language} did not train"
    for a, b in (("de", "en"), ("de", "ru"), ("en", "ru")):
        assert any(not torch.equal(weights[a][n], weights[b][n]) for n in expected), f"{a} and {b} share their biases"

    # evaluation: the per-language row runs each language through its own package
    matrix = transfer_matrix(run.paths.root, easy_data, split="dev", pm=bpm, progress=False)
    (row,) = matrix.rows
    assert row.kind == "per-language" and set(row.cells) == set(LANGUAGES)
    for language in LANGUAGES:
        rows = dev_rows(easy_data, language)
        assert row.cells[language] == score(run.head, bpm, by_hand(packages[language], bpm, rows), rows)

    # serving: a mixed batch, one forward per adapter group, each row as if its language were served alone
    texts = {lang: [r["text"] for r in dev_rows(easy_data, lang)[:4]] for lang in LANGUAGES}
    mixed_texts = [texts[lang][i] for i in range(4) for lang in LANGUAGES] + ["Buch gut"]
    mixed_languages = [lang for _ in range(4) for lang in LANGUAGES] + ["xx"]  # no adapter: the bare base
    router = Router.from_run(run.paths.root, pm=bpm)
    base_before = router.predict(mixed_texts, adapters=[BASE] * len(mixed_texts))
    mixed = router.predict(mixed_texts, mixed_languages)
    assert router.stats.forwards == 1 + 4, ("the base batch, then the mixed one: "
                                            "one forward per adapter group and one for the base row")
    assert [p["adapter"] for p in mixed] == mixed_languages[:-1] + [BASE]
    assert worst(mixed[-1:], base_before[-1:]) < 1e-5
    for language in LANGUAGES:
        mine = [p for p in mixed if p["adapter"] == language]
        alone = router.predict(texts[language], language)
        assert worst(mine, alone) < 1e-6
        assert worst(alone, by_hand(packages[language], bpm, [{"text": t} for t in texts[language]])) < 1e-5
    assert worst(router.predict(mixed_texts, adapters=[BASE] * len(mixed_texts)),
                 base_before) == 0.0, "base_only is the untouched base"

    # a package that does not fit changes nothing (all or nothing)
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = dict(weights["de"])
    first = sorted(broken)[0]
    broken[first] = torch.zeros(broken[first].numel() + 1)
    save_file(broken, str(bad / WEIGHTS))
    snapshot = {n: p.detach().clone() for n, p in router.model.named_parameters()}
    state_before = {k: dict(v) if isinstance(v, dict) else v for k, v in router.model.__dict__[ATTACHED].items()}
    with pytest.raises(ValueError, match="shape differs"):
        router.strategy.attach(router.model, bad, "bad", router.base.head)
    assert all(torch.equal(snapshot[n], p) for n, p in router.model.named_parameters())
    assert router.model.__dict__[ATTACHED]["adapters"].keys() == state_before["adapters"].keys()

    # eviction: one slot forces a detach before every other adapter's attach; answers stay right
    narrow = Router.from_run(run.paths.root, pm=bpm, capacity=1)
    narrow_base = narrow.predict(mixed_texts, adapters=[BASE] * len(mixed_texts))
    answers = narrow.predict(mixed_texts, mixed_languages)
    assert narrow.stats.evictions >= 2 and len(narrow.loaded()) == 1
    assert worst(answers[:-1], mixed[:-1]) < 1e-6 and worst(answers[-1:], narrow_base[-1:]) < 1e-5
    narrow.unload(narrow.loaded()[0])
    assert ATTACHED not in narrow.model.__dict__, "the last detach forgets every attached tensor"
    assert worst(narrow.predict(mixed_texts, adapters=[BASE] * len(mixed_texts)), narrow_base) == 0.0
    assert worst(narrow.predict(texts["ru"], "ru"), [p for p in mixed if p["adapter"] == "ru"]) < 1e-6
    assert_no_peft(router.model)
    assert_no_peft(narrow.model)


NO_PEFT_SCRIPT = r"""
import json, sys
sys.modules["peft"] = None  # any `import peft` now raises ImportError
sys.path.insert(0, sys.argv[1])
from test_bitfit_strategy import BitFitPlugin, bitfit_config
import xft_classification, xft_metrics, xft_samplers, xft_sources
from xft_core.hooks.manager import make_plugin_manager
from xft_core.training import train
from xft_core.evaluation import transfer_matrix
from xft_core.inference.router import Router

pm = make_plugin_manager(autoload=False)
for module in (xft_samplers, xft_classification, xft_metrics, xft_sources):
    pm.register(module, name=module.__name__)
pm.register(BitFitPlugin(), name="bitfit")
model, data, out = sys.argv[2], sys.argv[3], sys.argv[4]
seen = {}
for adapters in ("single", "per_language"):
    config = bitfit_config(model, data, out, name=adapters, adapters=adapters, sampler="round_robin", training={"max_steps": 6})
    run = train(config, pm=pm, progress=False)
    matrix = transfer_matrix(run.paths.root, data, split="dev", pm=pm, progress=False)
    router = Router.from_run(run.paths.root, pm=pm)
    served = router.predict(["Buch gut", "phone bad", "книга плохо"], ["de", "en", "ru"])
    seen[adapters] = {"cells": sorted(matrix.rows[0].cells), "served": [p["adapter"] for p in served],
                      "classes": sorted({type(m).__module__.split(".")[0] for m in router.model.modules()})}
seen["peft_modules"] = sorted(k for k, v in sys.modules.items() if k.split(".")[0] == "peft" and v is not None)
print("RESULT " + json.dumps(seen))
"""


def test_bitfit_needs_no_peft_and_the_core_imports_none(tiny_model, easy_data, tmp_path):
    # the core's source never imports peft (only the lora plugin does)
    pattern = re.compile(r"^\s*(?:from\s+peft[\s.]|import\s+peft\b)|import_module\(\s*[\"']peft|__import__\(\s*[\"']peft", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "xft_core").rglob("*.py"))
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"xft_core imports peft in: {offenders}"

    # train, evaluate and serve BitFit, single and per language, in a process where peft cannot be imported
    script = tmp_path / "no_peft.py"
    script.write_text(NO_PEFT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(Path(__file__).parent), str(tiny_model("bert")), str(easy_data),
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [lang for lang in done.stdout.splitlines() if lang.startswith("RESULT ")]
    seen = json.loads(line[len("RESULT "):])
    assert seen["peft_modules"] == []
    for adapters, adapter_names in (("single", ["multilingual"] * 3), ("per_language", ["de", "en", "ru"])):
        assert seen[adapters]["cells"] == LANGUAGES
        assert seen[adapters]["served"] == adapter_names
        assert "peft" not in seen[adapters]["classes"]
