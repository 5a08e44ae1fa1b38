"""What this CPU's matmuls can do: the figures docs/benchmarks.md reasons with ("The machine", "int8", the profile).

In one run, on `--threads` threads (default 1):

  fp32 / bf16   an N x N matmul (`--size`, default 1024) in each type: GFLOP/s and bf16's ratio to fp32. On a CPU
                without AVX512_BF16/AMX oneDNN emulates bf16 and it runs several times slower; with them, faster.
  int8          a bare int8 matmul (`torch._int_mm`, VNNI/AMX on x86) of Gemma 3 270M's shapes (640 tokens x 640 x
                2048) against fp32 on the same shapes: ms each and the ratio (what int8 could give before
                quantization costs; `int8_probe.py` measures the whole model)
  --profile     the torch profiler over one forward of the base LM (`--model`, default the embedded Gemma 3 270M)
                on 1 and on 32 SIB-200 prompts: wall time, per row, time in operators, the share in `aten::mm`

It prints the CPU's flags and xft's native-bf16 verdict first: every figure depends on them.

    python benchmarks/matmul_probe.py                    # matmuls on one thread
    python benchmarks/matmul_probe.py --profile          # and the profile of the embedded model's forward
    python benchmarks/matmul_probe.py --quick --profile  # small sizes, a tiny random Gemma 3 (CI); numbers mean nothing
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

from common import load_lm, print_hardware, probe_parser, prompts

INT8_SHAPE = (640, 640, 2048)  # tokens x hidden -> intermediate: one MLP projection of Gemma 3 270M on 640 tokens


def median_seconds(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up: oneDNN picks and caches its kernel
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_rates(size: int, repeat: int) -> dict[str, float]:
    """GFLOP/s of an N x N matmul in fp32 and in bf16."""
    import torch

    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        rates[name] = 2 * size**3 / median_seconds(lambda: torch.mm(a, b), repeat) / 1e9  # noqa: B023
    return rates


def int8_times(shape: tuple[int, int, int], repeat: int) -> dict[str, float] | None:
    """Seconds of one (m x k) @ (k x n) matmul in fp32 and in int8 (`torch._int_mm`); None where int8 mm is missing."""
    import torch

    m, k, n = shape
    if not hasattr(torch, "_int_mm"):
        return None
    a, b = torch.randn(m, k), torch.randn(k, n)
    qa, qb = torch.randint(-127, 128, (m, k), dtype=torch.int8), torch.randint(-127, 128, (k, n), dtype=torch.int8)
    try:
        return {"fp32": median_seconds(lambda: torch.mm(a, b), repeat),
                "int8": median_seconds(lambda: torch._int_mm(qa, qb), repeat)}
    except RuntimeError:  # no int8 kernel for this CPU or shape
        return None


def profile_forward(model: Any, tokenizer: Any, texts: list[str]) -> dict[str, float]:
    """Wall seconds of one forward over `texts`, seconds inside torch operators (top level), and aten::mm's share."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**batch)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            model(**batch)
            wall = time.perf_counter() - started
    events = prof.key_averages()
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / 1e6
    operators = sum(e.self_cpu_time_total for e in events) / 1e6
    return {"wall": wall, "operators": operators, "mm": mm}


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, per_language=8, batch_size=32)
    parser.add_argument("--size", type=int, default=1024, help="N of the N x N matmuls (default 1024)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per measure, median taken (default 20)")
    parser.add_argument("--profile", action="store_true", help="also profile one forward of --model on 1 and 32 prompts")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    size, repeat = (128, 3) if args.quick else (args.size, args.repeat)
    shape = (64, 64, 128) if args.quick else INT8_SHAPE
    print_hardware("float32, bf16 and int8 matmuls side by side; the forwards float32")
    rates = matmul_rates(size, repeat)
    print(f"{size}x{size} matmul, fp32  {rates['fp32']:9.1f} GFLOP/s")
    print(f"{size}x{size} matmul, bf16  {rates['bf16']:9.1f} GFLOP/s  {rates['bf16'] / rates['fp32']:.2f}x fp32")
    times = int8_times(shape, repeat)
    label = "x".join(map(str, shape))
    if times is None:
        print(f"int8 matmul {label}: not available (torch._int_mm missing or without a kernel here)")
    else:
        print(f"{label} matmul, fp32  {times['fp32'] * 1e3:9.3f} ms")
        print(f"{label} matmul, int8  {times['int8'] * 1e3:9.3f} ms  {times['fp32'] / times['int8']:.2f}x fp32")
    if args.profile:
        folder, tokenizer, model = load_lm(args)  # sets --threads again
        texts = prompts(args.per_language)
        print(f"profile: {folder.name}, forward of the base LM in fp32, {torch.get_num_threads()} thread(s)")
        for rows in (1, min(args.batch_size, len(texts))):
            got = profile_forward(model, tokenizer, texts[:rows])
            share = 100 * got["mm"] / max(got["operators"], 1e-12)
            print(f"forward of {rows:>2} row(s)  wall {got['wall'] * 1e3:9.1f} ms  per row {got['wall'] / rows * 1e3:8.1f} ms  "
                  f"in operators {got['operators'] * 1e3:9.1f} ms  aten::mm share {share:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
