"""Cut Tatoeba's test-only bitext into a small train split and a held-out dev split per language.

Tatoeba (LASER) ships one `<lang>.test.jsonl` per language with `{"source": <lang>, "target": English}`.
This writes `<lang>.train.jsonl` (the first `--train` pairs) and `<lang>.dev.jsonl` (the pairs after them
whose source sentence is not also a training sentence) into `--out`, a run folder outside the repository:
the data is not ours to copy.

    python examples/make_tatoeba_splits.py --source ../shared/data/tatoeba --out runs/tatoeba-data \\
        --languages deu fra spa --train 800
    xft train examples/tatoeba.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def split_language(source: Path, out: Path, language: str, train: int, dev: int) -> tuple[int, int]:
    path = source / f"{language}.test.jsonl"
    if not path.is_file():
        available = sorted(p.name.split(".")[0] for p in source.glob("*.test.jsonl"))
        raise SystemExit(f"{path} not found. Languages in {source}: {', '.join(available) or '(none)'}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) <= train:
        raise SystemExit(f"{path}: {len(rows)} pairs, so --train {train} leaves nothing to evaluate on")
    training = rows[:train]
    seen = {r["source"].strip() for r in training}
    held_out = [r for r in rows[train:] if r["source"].strip() not in seen]
    if dev:
        held_out = held_out[:dev]
    for split, part in (("train", training), ("dev", held_out)):
        lines = (json.dumps({"source": r["source"], "target": r["target"]}, ensure_ascii=False) for r in part)
        (out / f"{language}.{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(training), len(held_out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--source", type=Path, default=here.parents[1] / "shared" / "data" / "tatoeba")
    parser.add_argument("--out", type=Path, default=here.parent / "runs" / "tatoeba-data")
    parser.add_argument("--languages", nargs="+", default=["deu", "fra", "spa"])
    parser.add_argument("--train", type=int, default=800, help="pairs per language for training (the first N)")
    parser.add_argument("--dev", type=int, default=0, help="at most this many held-out pairs per language (0: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for language in args.languages:
        n_train, n_dev = split_language(args.source, args.out, language, args.train, args.dev)
        print(f"{language}: {n_train} train, {n_dev} dev -> {args.out}")


if __name__ == "__main__":
    main()
