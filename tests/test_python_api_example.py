"""examples/python_api.py runs as documented with --tiny: train, evaluate, router with hot swap, export, all offline and
every output under the folder it runs in."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python_api.py"
LANGUAGES = ["de", "en", "es", "zh"]


def lines(out: str, prefix: str) -> list[str]:
    return [line[len(prefix):].strip() for line in out.splitlines() if line.startswith(prefix)]


def test_the_python_api_example_runs_on_a_tiny_model(tmp_path):
    unset = ("XFT_BLOCK_PLUGINS", "XFT_DISABLE_PLUGIN_AUTOLOAD", "XFT_EXAMPLE_TINY")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "XFT_CACHE": str(tmp_path / "cache"),
                "COLUMNS": "200", "PYTHONPATH": str(ROOT)})
    done = subprocess.run([sys.executable, str(EXAMPLE), "--tiny"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    out_dir = tmp_path / "runs" / "python-api"

    # 1. train: one adapter per language, dev metrics for each
    assert lines(out, "model:") == ["runs/python-api/tiny-models/gemma3"]
    assert lines(out, "train:")[0] == "12 steps, adapters de, en, es, zh"
    dev = dict(line.split()[-2:] for line in lines(out, "train: dev macro_f1"))
    assert sorted(dev) == LANGUAGES and all(0 <= float(v) <= 1 for v in dev.values())
    for language in LANGUAGES:
        assert (out_dir / "reviews" / "adapters" / language / "xft.json").is_file()

    # 2. evaluate: the per-language row and one zero-shot row per adapter, reports on disk
    header, *rows, report = lines(out, "evaluate:")
    assert header == ("macro_f1 on de, en, es, zh; rows per-language, de (zero-shot), en (zero-shot), es (zero-shot), "
                      "zh (zero-shot)")
    assert [re.split(r"\s+\d", row)[0] for row in rows] == ["per-language"] + [f"{lang} (zero-shot)" for lang in LANGUAGES]
    for row in rows:
        values = [float(v) for v in re.findall(r"\d\.\d{3}", row)]
        assert len(values) == 5 and all(0 <= v <= 1 for v in values), row
    assert report == "report runs/python-api/reviews/report/transfer.md" and (tmp_path / report.split()[1]).is_file()
    matrix = json.loads((out_dir / "reviews" / "report" / "transfer.json").read_text())
    assert matrix["split"] == "test"

    # 3. router: explicit languages and detection, each row on its language's adapter, version 1
    routed = lines(out, "router:")
    assert re.fullmatch(r"de -> adapter de v1 \([0-9a-f]{12}\): (negative|neutral|positive)", routed[0])
    assert re.fullmatch(r"es -> adapter es v1 \([0-9a-f]{12}\): (negative|neutral|positive)", routed[1])
    assert re.fullmatch(r"auto detected zh -> adapter zh: (negative|neutral|positive)", routed[2])

    # 4. hot swap: a new version with a new content hash, the old hash is the one the router reported before
    (swap,) = lines(out, "hot swap:")
    found = re.fullmatch(r"de v1 \(([0-9a-f]{12})\) -> v2 \(([0-9a-f]{12})\); replace returned 2; loaded (.+)", swap)
    assert found, swap
    old, new, loaded = found.groups()
    assert old != new and old in routed[0] and "de" in loaded.split(", ")
    assert (out_dir / "reviews-de-v2" / "adapters" / "de" / "xft.json").is_file()

    # 5. export: a merged Hugging Face folder that computes what the package computes
    exported, compared = lines(out, "export:")
    assert exported == ("merged -> runs/python-api/exports/reviews-de (AutoModelForSequenceClassification, "
                        "labels negative, neutral, positive)")
    assert (out_dir / "exports" / "reviews-de" / "config.json").is_file()
    assert (out_dir / "exports" / "reviews-de" / "xft-export.json").is_file()
    found = re.fullmatch(r"merged model says (\w+), the de package said (\w+); largest logit difference (\S+)", compared)
    assert found and found.group(1) == found.group(2) and float(found.group(3)) < 1e-3, compared

    # nothing was written beside the example
    assert not (ROOT / "examples" / "runs").exists()
