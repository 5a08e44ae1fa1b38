"""Inference throughput: the router's batch inference against a plain peft loop on the same texts, in one run.

(a) plain   PeftModel.from_pretrained(base, adapter), the texts in their given order in batches of 32, each padded
            to its longest row, `torch.no_grad`, fp32: what a user writes around a saved adapter.
(b) router  `Router.from_run(...).predict(texts, language)`: rows ordered by length into forwards of similar length,
            in the router's precision (`auto`: bf16 only where the CPU has native bf16).
Both answer every text; the script prints rows/s of each, the ratio, and the share of texts whose predicted label
agrees.

    python benchmarks/inference_throughput.py --run runs/NAME     # a run with a sequence-classification adapter
    python benchmarks/inference_throughput.py                     # trains one on SIB-200 English first (embedded model)
    python benchmarks/inference_throughput.py --quick             # a tiny model and a few texts (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIB = ROOT.parent / "shared" / "data" / "sib200"


def texts_of(data: Path, languages: list[str], per_language: int) -> list[str]:
    texts = []
    for language in languages:
        rows = [json.loads(x) for x in (data / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
        texts += [r["text"] for r in rows[:per_language]]
    return texts


def train_adapter(model: str, data: Path, out: Path, steps: int) -> Path:
    import xft_core

    run = xft_core.train({"name": "inference-throughput", "output_dir": str(out), "model": model,
                          "task": "sequence-classification", "strategy": "lora",
                          "data": {"path": str(data), "train_languages": ["eng"], "eval_languages": []},
                          "training": {"max_steps": steps, "batch_size": 16, "learning_rate": 5e-4, "max_length": 128},
                          "data_check": False}, progress=False)
    return run.paths.root


def base_of(package: Path) -> tuple[Path, dict]:
    """The folder of the adapter package's base model, and the package's manifest data."""
    from xft_core.adapters import Manifest
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import resolve_model

    manifest = Manifest.read(package)
    return resolve_model(manifest.data["base_model"], get_plugin_manager()), manifest.data


def plain(package: Path, texts: list[str], batch_size: int, max_length: int) -> tuple[list[str], float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, manifest = base_of(package)
    labels = manifest["labels"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels))
    base.config.pad_token_id = tokenizer.pad_token_id
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the router runs too
    model = PeftModel.from_pretrained(base, str(package)).eval().to(device)

    def forward(rows: list[str]) -> Any:
        batch = tokenizer(rows, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).tolist()

    predicted = []
    with torch.no_grad():
        forward(texts[:2])  # warm-up before the clock, as the router gets
        started = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            predicted += [labels[i] for i in forward(texts[start : start + batch_size])]
    return predicted, time.perf_counter() - started


def padding_bound(package: Path, texts: list[str], batch_size: int, max_length: int) -> tuple[int, int, int]:
    """(tokens in the texts, token positions of batches in the given order, of batches cut from the texts sorted
    by length): what (a) computes, and the least any batching into forwards of `batch_size` computes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_of(package)[0])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]

    def positions(order: list[int]) -> int:
        return sum(max(order[i : i + batch_size]) * len(order[i : i + batch_size]) for i in range(0, len(order), batch_size))

    return sum(lengths), positions(lengths), positions(sorted(lengths))


def routed(run: Path, texts: list[str], batch_size: int, max_length: int, language: str) -> tuple[list[str], float, str]:
    from xft_core.inference import Router

    router = Router.from_run(run, batch_size=batch_size, max_length=max_length, precision="auto")
    router.predict(texts[:2], language)  # the adapter is loaded before the clock starts, as in (a)
    started = time.perf_counter()
    predicted = [p["label"] for p in router.predict(texts, language)]
    return predicted, time.perf_counter() - started, router.precision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder with one sequence-classification adapter")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--per-language", type=int, default=100, help="texts per language (SIB-200 test)")
    parser.add_argument("--languages", nargs="+", default=["eng", "deu", "fra", "zho", "swh"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    from common import auto_precision, print_hardware

    print_hardware(f"{auto_precision()} for the xft router (precision auto); the plain peft loop float32")
    work = Path(tempfile.mkdtemp(prefix="xft-inference-"))
    model, steps = args.model, 30
    if args.quick:
        from xft_core.testing import build_tiny_model

        model, steps, args.per_language, args.languages = str(build_tiny_model("gemma3", work / "tiny")), 2, 8, ["eng", "deu"]
    run = args.run or train_adapter(model, SIB, work / "runs", steps)
    package = next(p for p in sorted((run / "adapters").iterdir()) if (p / "xft.json").is_file())
    texts = texts_of(SIB, args.languages, args.per_language)
    mine, seconds_b, precision = routed(run, texts, args.batch_size, args.max_length, "eng")
    theirs, seconds_a = plain(package, texts, args.batch_size, args.max_length)
    agree = sum(a == b for a, b in zip(mine, theirs)) / len(texts)
    tokens, given, ordered = padding_bound(package, texts, args.batch_size, args.max_length)
    print(f"{len(texts)} texts ({', '.join(args.languages)}), batches of {args.batch_size}")
    print(f"(a) plain peft loop   {len(texts) / seconds_a:8.1f} rows/s  (float32, batches in the given order)")
    print(f"(b) xft router        {len(texts) / seconds_b:8.1f} rows/s  (precision {precision}, length-ordered forwards)")
    print(f"(b)/(a) {seconds_a / seconds_b:.2f}x rows/s; predicted labels agree on {100 * agree:.1f}% of the texts")
    print(f"{tokens} tokens; (a)'s batches compute {given} positions ({100 * (1 - tokens / given):.1f}% padding), "
          f"batches of the length-sorted texts {ordered}: ordering alone bounds (b)/(a) at {given / ordered:.2f}x")
    if args.json:
        from common import describe

        args.json.write_text(json.dumps({"plain_rows_per_second": len(texts) / seconds_a, "precision": precision,
                                         "xft_rows_per_second": len(texts) / seconds_b, "agreement": agree,
                                         "ratio": seconds_a / seconds_b, "hardware": describe()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
