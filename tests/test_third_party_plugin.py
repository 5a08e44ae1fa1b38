"""The example third-party plugin `examples/plugins/xft-ia3` (strategy `ia3`, sampler `curriculum`).

Installed with pip into a fresh virtual environment it appears in `xft plugins` under its distribution, trains from a
config, passes its author's own tests (written with xft's testing helpers), and is gone when blocked or uninstalled.
In this process, registered by hand: the curriculum's shares and saved state, and IA3's scale, base_only, all-or-
nothing attach, plain-peft packages and serving one adapter per forward.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config, write_sentiment_data

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugins" / "xft-ia3"
PLUGIN, DISTRIBUTION, VERSION = "xft_ia3", "xft-ia3", "0.1.0"  # entry-point name, distribution, its version
LANGUAGES = ["de", "en", "ru"]


# ============================================================================ installed in a fresh environment
@dataclass
class Env:
    """A virtual environment of its own (xft and its dependencies read from this one's site-packages, as if
    installed there), the example plugin's source copied beside it."""

    root: Path
    python: Path
    source: Path

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.python), "-m", "pip", *args, "--disable-pip-version-check", "--no-input"],
                              capture_output=True, text=True, timeout=300, env=_environ(), cwd=self.root)
        assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    def install(self) -> None:
        # offline and exactly this folder: xft is already there, the build uses the setuptools already there
        self.pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", str(self.source))

    def xft(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), "-m", "xft_core", *args], capture_output=True, text=True, timeout=300,
                              env=_environ(**env), cwd=self.root)


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("XFT_BLOCK_PLUGINS", "XFT_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH", "VIRTUAL_ENV")}
    environ.update({"COLUMNS": "250", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return {**environ, **extra}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("plugin-env")
    # a copy: building writes build/ and *.egg-info into the source folder
    source = Path(shutil.copytree(EXAMPLE, root / "xft-ia3",
                                  ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True, env=_environ()).strip())
    # addsitedir, not a plain path line: it runs this environment's own .pth files too (the editable xft)
    (site / "xft-test-parent.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    environment = Env(root, python, source)
    environment.install()
    return environment


@pytest.fixture(scope="module")
def config_file(tiny_model, tmp_path_factory) -> Path:
    """A config that names the plugin's strategy and sampler: one IA3 adapter per language, a short curriculum."""
    folder = tmp_path_factory.mktemp("plugin-config")
    config = tiny_config(tiny_model("bert"), write_sentiment_data(folder / "data"), folder / "runs", name="ia3-run",
                         strategy="ia3", strategy_options={}, sampler="curriculum",
                         sampler_options={"start": 1.0, "end": 0.0}, adapters="per_language",
                         training={"max_steps": 6})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _plugin_rows(out: str) -> list[str]:
    """The table row of the plugin and the continuation lines of its `provides` cell."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if f" {PLUGIN} " in line), None)
    if start is None:
        return []
    rows = [lines[start]]
    for line in lines[start + 1:]:
        cells = [c.strip() for c in line.strip("│┃|").split("│")]
        if len(cells) < 4 or cells[0]:
            break
        rows.append(line)
    return rows


def test_pip_install_makes_the_plugin_appear_in_xft_plugins(env):
    done = env.xft("plugins")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _plugin_rows(done.stdout)
    assert rows, f"{PLUGIN} missing from:\n{done.stdout}"
    assert f" {DISTRIBUTION} " in rows[0] and f" {VERSION} " in rows[0], rows[0]
    provided = " ".join(rows)
    assert "strategy: ia3" in provided and "sampler: curriculum" in provided, provided
    assert " xft_lora " in done.stdout, "the built-ins are still there"


def test_a_config_trains_with_the_plugins_strategy_and_sampler(env, config_file):
    from peft import IA3Config, PeftConfig

    done = env.xft("train", str(config_file), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    run = Path(yaml.safe_load(config_file.read_text())["output_dir"]) / "ia3-run"
    for language in LANGUAGES:
        package = run / "adapters" / language
        assert sorted(p.name for p in package.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "xft.json"]
        assert isinstance(PeftConfig.from_pretrained(str(package)), IA3Config)
        manifest = json.loads((package / "xft.json").read_text())
        assert manifest["strategy"] == "ia3" and manifest["languages"] == [language]
    assert yaml.safe_load((run / "config.yaml").read_text())["sampler"] == "curriculum"
    drawn = json.loads((run / "run.json").read_text())["examples_drawn"]
    assert sorted(drawn) == LANGUAGES and sum(drawn.values()) == 6 * 8, drawn


def test_the_plugins_transfer_recipe_is_listed_and_the_suite_runs_it(env, tmp_path):
    listed = env.xft("bench", "transfer", "--list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    line = next((line for line in listed.stdout.splitlines() if line.startswith("ia3-verbalizer ")), "")
    assert f"[plugin {PLUGIN}]" in line and "kinds: classification" in line, listed.stdout
    shared = ROOT.parent / "shared" / "data"
    if not (shared / "sib200").is_dir():
        pytest.skip("needs ../shared/data for the suite run")
    out = tmp_path / "suite"
    done = env.xft("bench", "transfer", "--quick", "--tasks", "sib200", "--recipes", "ia3-verbalizer", "--out", str(out),
                   "--data", str(shared), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert result["recipe"] == "ia3-verbalizer" and 0 <= result["zero_shot"] <= 1 and len(result["scores"]) == 10
    manifest = json.loads((out / "runs" / "sib200-ia3-verbalizer-s0" / "adapters" / "eng" / "xft.json").read_text())
    assert manifest["strategy"] == "ia3" and manifest["task"] == "prompt-classification"


def test_the_plugin_authors_own_tests_pass_with_xfts_testing_helpers(env):
    # run from the environment's folder, so `import xft_ia3` finds the installed package, not the source
    done = subprocess.run([str(env.python), "-m", "pytest", str(env.source / "tests"), "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=600, env=_environ(), cwd=env.root)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "failed" not in done.stdout
    located = subprocess.run([str(env.python), "-c", "import xft_ia3; print(xft_ia3.__file__)"], capture_output=True,
                             text=True, env=_environ(), cwd=env.root)
    assert str(env.root / "venv") in located.stdout, located.stdout + located.stderr


def _assert_not_listed(env: Env, **environ: str) -> None:
    listed = env.xft("plugins", **environ)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert f" {PLUGIN} " not in listed.stdout and "strategy: ia3" not in listed.stdout, listed.stdout
    assert "sampler: curriculum" not in listed.stdout and " xft_lora " in listed.stdout, listed.stdout


def test_blocking_the_plugin_removes_its_strategy_and_sampler(env, config_file):
    _assert_not_listed(env, XFT_BLOCK_PLUGINS=PLUGIN)
    failed = env.xft("train", str(config_file), "--no-progress", "--set", "name=blocked", XFT_BLOCK_PLUGINS=PLUGIN)
    assert failed.returncode == 2, failed.stdout[-2000:] + failed.stderr[-2000:]
    message = " ".join(failed.stderr.split())
    assert "Unknown strategy 'ia3' (config key: strategy). Available: " in message, message
    available = message.split("Available: ", 1)[1].split(".", 1)[0].split(", ")
    assert {"full", "lora"} <= set(available) and "ia3" not in available, available


def test_uninstalling_the_plugin_removes_it(env):
    env.pip("uninstall", "--yes", DISTRIBUTION)
    try:
        _assert_not_listed(env)
        gone = subprocess.run([str(env.python), "-c", "import xft_ia3"], capture_output=True, text=True, env=_environ(),
                              cwd=env.root)
        assert gone.returncode != 0 and "No module named 'xft_ia3'" in gone.stderr
    finally:
        env.install()  # the environment is shared by this module's tests, whatever their order


# ==================================================================================== in this process
@pytest.fixture(scope="module")
def xft_ia3():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import xft_ia3 as module
    finally:
        sys.path.remove(str(EXAMPLE))
    return module


@pytest.fixture(scope="module")
def ipm(xft_ia3):
    from xft_core.testing import plugin_manager

    return plugin_manager(xft_ia3)


def test_curriculum_shares_move_linearly_from_proportional_to_uniform(xft_ia3, ipm):
    from xft_core.config import ConfigError, build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(ipm, "samplers", "curriculum", config_key="sampler")
    sampler = spec.build({"en": 60, "de": 30, "ru": 10, "xx": 0}, build_options(spec.options, {}, key="sampler_options"), 0)
    proportional = {"de": 0.3, "en": 0.6, "ru": 0.1}
    uniform = {k: 1 / 3 for k in proportional}
    assert sampler.languages == ["de", "en", "ru"], "a language without examples is never drawn"
    assert sampler.probabilities() == pytest.approx(proportional)
    sampler.set_progress(0.5)
    assert sampler.probabilities() == pytest.approx({k: (proportional[k] + uniform[k]) / 2 for k in proportional})
    sampler.set_progress(1.0)
    assert sampler.probabilities() == pytest.approx(uniform)
    reverse = spec.build({"en": 60, "de": 30, "ru": 10}, xft_ia3.CurriculumOptions(start=0.0, end=1.0), 0)
    reverse.set_progress(0.25)
    assert reverse.probabilities() == pytest.approx({k: 0.75 * uniform[k] + 0.25 * proportional[k] for k in uniform})
    with pytest.raises(ConfigError, match="sampler_options.*curriculum: end must be a number in"):
        build_options(spec.options, {"end": 2}, key="sampler_options")


def test_curriculum_state_round_trip_draws_the_same_languages(xft_ia3):
    options = xft_ia3.CurriculumOptions()
    sizes = {"en": 50, "de": 20, "ru": 5}
    first = xft_ia3.CurriculumSampler(sizes, options, seed=3)
    steps = 60

    def draw(sampler, start: int, stop: int) -> list[str]:
        drawn = []
        for step in range(start, stop):
            sampler.set_progress(step / steps)
            drawn.append(sampler.next_language())
            sampler.record(drawn[-1], 8)
        return drawn

    early = draw(first, 0, 30)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint keeps
    late = draw(first, 30, steps)
    resumed = xft_ia3.CurriculumSampler(sizes, options, seed=99)  # the seed does not matter once state is loaded
    resumed.load_state_dict(state)
    assert resumed.counts == {k: 8 * early.count(k) for k in sorted(sizes)}
    assert draw(resumed, 30, steps) == late
    assert resumed.counts == first.counts and resumed.draws == first.draws == steps
    assert len(set(early + late)) == 3


@pytest.fixture(scope="module")
def ia3_run(ipm, tiny_model, tmp_path_factory):
    from xft_core.training import train

    folder = tmp_path_factory.mktemp("ia3-in-process")
    config = tiny_config(tiny_model("bert"), write_sentiment_data(folder / "data", vocabulary=2), folder / "runs",
                         strategy="ia3", strategy_options={}, sampler="curriculum", adapters="per_language",
                         training={"max_steps": 12, "learning_rate": 5e-2})
    return train(config, pm=ipm, progress=False)


def _features(base, texts: list[str]) -> dict:
    return base.head.collate(base.head.encode([{"text": t} for t in texts], base.tokenizer, 64), base.tokenizer)


def _forward(model, batch: dict):
    import torch

    batch = {k: v for k, v in batch.items() if k != "labels"}
    model.eval()
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out.logits, out.hidden_states[-1]


def test_ia3_trains_one_adapter_per_language_and_never_mixes_rows(ia3_run, xft_ia3):
    import torch

    model = ia3_run.unwrapped_model()
    strategy = ia3_run.strategy
    assert isinstance(strategy, xft_ia3.IA3) and strategy.mixed_batch is False
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    strategy.activate(model, "ru")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == names, "names do not follow the active adapter"
    vectors = {lang: [p for n, p in model.named_parameters() if n.endswith(f"ia3_l.{lang}")] for lang in LANGUAGES}
    scaled = sorted({n.split(".ia3_l.")[0].split(".layer.", 1)[1][2:] for n, _ in model.named_parameters() if ".ia3_l." in n})
    assert scaled == ["attention.self.key", "attention.self.value", "output.dense"], "auto: BERT's key, value, feed-forward out"
    assert len(vectors["de"]) == 6, "three vectors in each of the two layers"
    assert all(not torch.equal(v, torch.ones_like(v)) for lang in LANGUAGES for v in vectors[lang]), "every adapter trained"
    assert any(not torch.equal(a, b) for a, b in zip(vectors["de"], vectors["en"]))
    with pytest.raises(NotImplementedError, match="one adapter per forward"):
        strategy.route(model, ["de", "en"])


def test_ia3_scale_0_is_the_base_and_1_the_adapter(ia3_run, ipm):
    import torch
    from peft.tuners.ia3 import IA3Layer

    from xft_core.adapters import load_base, strategy_from_manifest
    from xft_core.adapters.manifest import Manifest

    package = Path(ia3_run.adapter_dirs["de"])
    base = load_base(package, ipm)
    batch = _features(base, ["Buch gut", "Lampe schlecht", "Uhr prima"])
    base_logits, base_hidden = _forward(base.model, batch)
    _, strategy = strategy_from_manifest(Manifest.read(package), ipm)
    model = strategy.attach(base.model, package, "de", base.head)
    strategy.activate(model, "de")
    logits, hidden = _forward(model, batch)
    assert not torch.allclose(hidden, base_hidden, atol=1e-4), "the adapter changes the body"
    trained = {n: m.ia3_l["de"].detach().clone() for n, m in model.named_modules() if isinstance(m, IA3Layer)}

    strategy.scale(model, "de", 0.0)
    zero_logits, zero_hidden = _forward(model, batch)
    with strategy.base_only(model):
        only_logits, only_hidden = _forward(model, batch)
    assert torch.allclose(zero_hidden, base_hidden, atol=1e-6), "scale 0: the base body"
    assert torch.allclose(only_hidden, base_hidden, atol=1e-6) and torch.allclose(only_logits, base_logits, atol=1e-6)
    strategy.scale(model, "de", 0.5)
    for name, module in model.named_modules():
        if isinstance(module, IA3Layer):
            assert torch.allclose(module.ia3_l["de"], 1 + 0.5 * (trained[name] - 1)), name
    half_logits, half_hidden = _forward(model, batch)
    assert not torch.allclose(half_hidden, hidden, atol=1e-5) and not torch.allclose(half_hidden, base_hidden, atol=1e-5)
    strategy.scale(model, "de", 1.0)
    one_logits, one_hidden = _forward(model, batch)
    assert torch.equal(one_logits, logits) and torch.equal(one_hidden, hidden), "scale 1: the adapter as trained, exactly"
    assert all(torch.equal(m.ia3_l["de"], trained[n]) for n, m in model.named_modules() if isinstance(m, IA3Layer))
    assert not torch.allclose(zero_logits, base_logits, atol=1e-4), "the trained head is not interpolated"

    bare = strategy.detach(model, "de")
    assert not hasattr(bare, "peft_config") and not any(isinstance(m, IA3Layer) for m in bare.modules())
    again_logits, again_hidden = _forward(bare, batch)
    assert torch.equal(again_logits, base_logits) and torch.equal(again_hidden, base_hidden)


def test_ia3_packages_load_with_plain_peft_and_answer_as_xft(ia3_run, ipm):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from xft_core.adapters import load_base, strategy_from_manifest
    from xft_core.adapters.manifest import Manifest

    package = Path(ia3_run.adapter_dirs["en"])
    base = load_base(package, ipm)
    batch = _features(base, ["phone good", "lamp bad"])
    _, strategy = strategy_from_manifest(Manifest.read(package), ipm)
    xft_logits, _ = _forward(strategy.attach(base.model, package, "en", base.head), batch)
    labels = json.loads((package / "xft.json").read_text())["labels"]
    plain = AutoModelForSequenceClassification.from_pretrained(base.model_path, num_labels=len(labels))
    peft_logits, _ = _forward(PeftModel.from_pretrained(plain, str(package)), batch)
    assert torch.allclose(xft_logits, peft_logits, atol=1e-6)


def test_ia3_attach_is_all_or_nothing(ia3_run, ipm, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from xft_core.adapters import load_base, strategy_from_manifest
    from xft_core.adapters.manifest import Manifest

    good = Path(ia3_run.adapter_dirs["de"])
    base = load_base(good, ipm)
    _, strategy = strategy_from_manifest(Manifest.read(good), ipm)
    weights = load_file(str(good / "adapter_model.safetensors"))
    bad = {}
    for name, change in (("short", lambda w: {k: v for k, v in list(w.items())[1:]}),
                         ("shape", lambda w: {k: (torch.ones(v.numel() + 1) if i == 0 else v)
                                             for i, (k, v) in enumerate(w.items())}),
                         ("extra", lambda w: {**w, "base_model.model.bert.pooler.dense.weight": torch.zeros(32, 32)})):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(good / "adapter_config.json", folder)
        save_file(change(weights), str(folder / "adapter_model.safetensors"))
        bad[name] = folder
    (tmp_path / "empty").mkdir()

    def snapshot(model):
        return ([(n, type(m).__name__) for n, m in model.named_modules()],
                {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()})

    def same(model, before) -> bool:
        modules, params = snapshot(model)
        return modules == before[0] and params.keys() == before[1].keys() and all(
            torch.equal(v, before[1][k][0]) and f == before[1][k][1] for k, (v, f) in params.items())

    for model in (base.model, None):  # the bare base, then a model already carrying an adapter
        if model is None:
            model = strategy.attach(base.model, good, "de", base.head)
        before = snapshot(model)
        with pytest.raises(FileNotFoundError, match="adapter_config.json: missing"):
            strategy.attach(model, tmp_path / "empty", "x", base.head)
        for name, folder in bad.items():
            with pytest.raises(ValueError, match="do not fit this model"):
                strategy.attach(model, folder, "x", base.head)
            assert same(model, before), f"a failed attach ({name}) changed the model"
        assert not hasattr(model, "peft_config") or list(model.peft_config) == ["de"]


def test_the_router_serves_ia3_adapters_one_forward_per_adapter(ia3_run, ipm):
    from xft_core.inference.router import Router

    router = Router.from_run(ia3_run.paths.root, pm=ipm)
    texts = {"de": ["Buch gut", "Lampe schlecht"], "en": ["phone good", "lamp bad"], "ru": ["книга хорошо", "лампа плохо"]}
    alone = {lang: router.predict(texts[lang], lang) for lang in LANGUAGES}
    forwards = router.stats.forwards
    mixed = router.predict([t for i in range(2) for lang in LANGUAGES for t in texts[lang][i:i + 1]],
                           [lang for _ in range(2) for lang in LANGUAGES])
    assert router.stats.forwards - forwards == 3, "one forward per adapter: IA3 rows cannot share one"
    for i, prediction in enumerate(mixed):
        language, row = LANGUAGES[i % 3], i // 3
        assert prediction["adapter"] == language
        assert max(abs(a - b) for a, b in zip(prediction["logits"], alone[language][row]["logits"])) < 1e-5
