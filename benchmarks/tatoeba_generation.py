"""Tatoeba translation into English: the base model zero-shot against the same model after LoRA fine-tuning.

    python benchmarks/tatoeba_generation.py                       # examples/tatoeba.yaml as it is
    python benchmarks/tatoeba_generation.py --set training.max_steps=100 --languages deu fra spa ita
    python benchmarks/tatoeba_generation.py --threads 1     # on CPU cores that other jobs share

Cuts the train/dev splits into runs/ when they are missing (examples/make_tatoeba_splits.py), scores the
untrained model (LoRA with B = 0 is the base model) on the held-out pairs, trains, scores again, and prints
chrF / BLEU per language with training speed and wall time; the numbers also go to <run>/tatoeba.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xft_core.evaluation.predict import predict_rows

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins", ROOT / "examples"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> None:
    from make_tatoeba_splits import main as make_splits

    from xft_core.config import load_config, parse_overrides
    from xft_core.hooks import ROW_LANGUAGE
    from xft_core.training import evaluate_dev, prepare, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "tatoeba.yaml")
    parser.add_argument("--languages", nargs="+", default=["deu", "fra", "spa"])
    parser.add_argument("--train", type=int, default=800, help="training pairs per language")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-zero-shot", action="store_true", help="skip scoring the untrained model")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 is several times faster on cores shared with other jobs")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from common import auto_precision, print_hardware

    print_hardware(f"{auto_precision()} where training.precision is auto (the config may say otherwise)")

    overrides = parse_overrides(args.overrides)
    overrides.setdefault("name", f"tatoeba-{time.strftime('%Y%m%d-%H%M%S')}")
    config = load_config(args.config, overrides)
    data = Path(config.data.path)
    if any(not (data / f"{lang}.{split}.jsonl").is_file() for lang in args.languages for split in ("train", "dev")):
        make_splits(["--out", str(data), "--train", str(args.train), "--languages", *args.languages])
    config = load_config(config, {"data": {"train_languages": args.languages}})

    started = time.perf_counter()
    before: dict[str, dict[str, float]] = {}
    zero_shot_seconds = 0.0
    if not args.no_zero_shot:
        untrained = prepare(config)
        tic = time.perf_counter()
        before = evaluate_dev(untrained)
        zero_shot_seconds = time.perf_counter() - tic
        del untrained
    run = train(config)
    after = run.metrics
    tic = time.perf_counter()
    samples = {}
    model = run.accelerator.unwrap_model(run.model)
    for language, part in run.dev.items():
        rows = [{**row, ROW_LANGUAGE: language} for row in part.rows[:3]]
        with run.accelerator.autocast():
            predicted = predict_rows(run.head, model, run.tokenizer, rows, batch_size=3, max_length=config.training.max_length)
        samples[language] = [{"source": r["source"], "reference": r["target"], "output": p["text"]}
                             for r, p in zip(rows, predicted)]
    wall = time.perf_counter() - started

    print(f"\nTatoeba -> English, {config.model}, {config.strategy} {dict(config.strategy_options)}, "
          f"{run.step} steps x {config.training.batch_size}, precision {run.accelerator.mixed_precision}")
    print(f"{'language':<9}{'pairs':>6}{'chrF 0-shot':>13}{'chrF tuned':>12}{'BLEU 0-shot':>13}{'BLEU tuned':>12}")
    for language in run.dev:
        b, a = before.get(language, {}), after[language]
        print(f"{language:<9}{len(run.dev[language]):>6}{b.get('chrf', float('nan')):>13.1f}{a['chrf']:>12.1f}"
              f"{b.get('bleu', float('nan')):>13.1f}{a['bleu']:>12.1f}")
    print(f"training: {run.examples_per_second:.2f} examples/s; zero-shot scoring {zero_shot_seconds:.0f} s; "
          f"train + final scoring {run.wall_seconds:.0f} s; total wall {wall:.0f} s; torch threads {torch_threads()}")
    for language, rows in samples.items():
        for sample in rows[:2]:
            print(f"  [{language}] {sample['source']}\n        ref: {sample['reference']}\n        out: {sample['output']}")
    summary = {
        "model": config.model, "languages": list(run.dev), "steps": run.step, "batch_size": config.training.batch_size,
        "strategy": config.strategy, "strategy_options": dict(config.strategy_options),
        "precision": run.accelerator.mixed_precision, "zero_shot": before, "fine_tuned": after,
        "examples_per_second": run.examples_per_second, "zero_shot_seconds": zero_shot_seconds,
        "train_and_eval_seconds": run.wall_seconds, "wall_seconds": wall, "torch_threads": torch_threads(), "samples": samples,
    }
    (run.paths.root / "tatoeba.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written: {run.paths.root / 'tatoeba.json'}")


if __name__ == "__main__":
    main()
