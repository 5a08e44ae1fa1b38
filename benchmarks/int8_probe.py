"""Would int8 base weights make xft faster on a CPU without native bf16? The measurement behind the answer "not
at this quality" (docs/benchmarks.md, "int8").

One forward of the same prompts (SIB-200 test sentences in four languages, "<text>\\nTopic:", as the
prompt-classification head builds them) through three copies of one base model, in one run:

  fp32   the model as loaded (the baseline)
  w8     every linear layer's weight rounded to int8 with one scale per output channel, computed in fp32
         (the error of the weights alone)
  w8a8   the same int8 weights multiplied on int8 dot products (`torch._int_mm`, VNNI on x86), each input row
         quantized to int8 on the fly (per token): the speed int8 can give, and its full error

For each it prints rows/s, the ratio to fp32, the share of prompts whose best topic word (of the seven SIB-200
label words, as the verbalizer scores them) agrees with fp32's, and the relative error of those scores. The
embedding table and the LM head tied to it stay fp32 in every variant.

    python benchmarks/int8_probe.py                  # the embedded Gemma 3 270M, 32 prompts per language
    python benchmarks/int8_probe.py --quick          # a tiny random Gemma 3 (CI); its numbers mean nothing
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

from common import LANGUAGES, SIB, TOPICS, load_lm, print_hardware, probe_parser, prompts


def int8_linear_class() -> Any:
    import torch
    from torch import nn

    def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        return torch.round(x / scale).to(torch.int8), scale

    class Int8Linear(nn.Module):
        """A frozen linear layer as int8 weights (one scale per output row); `activations` also quantizes each
        input row and multiplies on int8 dot products, else it computes in fp32 with the rounded weights."""

        def __init__(self, linear: nn.Linear, activations: bool):
            super().__init__()
            weight = linear.weight.detach().float()
            self.scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            self.qweight = torch.round(weight / self.scale[:, None]).to(torch.int8)
            self.rounded = None if activations else self.qweight.float() * self.scale[:, None]
            self.bias = None if linear.bias is None else linear.bias.detach().float()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.rounded is not None:
                out = x @ self.rounded.t()
            else:
                values, row_scale = quantize_rows(x.reshape(-1, x.shape[-1]))
                out = (torch._int_mm(values, self.qweight.t()).float() * row_scale * self.scale)
                out = out.reshape(*x.shape[:-1], -1)
            return out if self.bias is None else out + self.bias

    return Int8Linear


def quantized(model: Any, activations: bool) -> Any:
    """A copy of `model` whose linear layers (except any tied to another module's weight) are int8."""
    from torch import nn

    Int8Linear = int8_linear_class()
    model = copy.deepcopy(model)
    shared: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            shared[parameter.data_ptr()] = shared.get(parameter.data_ptr(), 0) + 1
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and shared.get(child.weight.data_ptr(), 0) == 1:
                setattr(parent, name, Int8Linear(child, activations))
    return model


def main(argv: list[str] | None = None) -> int:
    args = probe_parser(__doc__, per_language=32, batch_size=32).parse_args(argv)
    if not SIB.is_dir():
        print(f"needs the SIB-200 data in {SIB}")
        return 2

    import torch

    folder, tokenizer, model = load_lm(args)
    texts = prompts(4 if args.quick else args.per_language)
    word_ids = [tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in TOPICS]
    batches = [tokenizer(texts[i:i + args.batch_size], return_tensors="pt", padding=True)
               for i in range(0, len(texts), args.batch_size)]

    def scores(variant: Any) -> tuple[Any, float]:
        with torch.no_grad():
            variant(**batches[0], logits_to_keep=1)  # warm-up
            started = time.perf_counter()
            out = torch.cat([variant(**b, logits_to_keep=1).logits[:, -1, word_ids] for b in batches])
        return out, time.perf_counter() - started

    print(f"model {folder.name}: {len(texts)} prompts in {len(LANGUAGES)} languages, forwards of "
          f"{args.batch_size}, precision fp32, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print_hardware("float32 (w8, w8a8: int8 weights / dot products)")
    reference, seconds = scores(model)
    print(f"{'fp32':<6} {len(texts) / seconds:8.2f} rows/s  1.00x  topic agreement 100.0%  score error 0.000")
    for name, activations in (("w8", False), ("w8a8", True)):
        got, took = scores(quantized(model, activations))
        agree = (got.argmax(-1) == reference.argmax(-1)).float().mean().item() * 100
        error = ((got - reference).norm() / reference.norm()).item()
        print(f"{name:<6} {len(texts) / took:8.2f} rows/s  {seconds / took:.2f}x  topic agreement {agree:5.1f}%  "
              f"score error {error:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
