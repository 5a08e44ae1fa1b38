"""Faster equivalents, for training, of two pieces of Hugging Face models that a profile of a LoRA step shows
costing more than their matmuls where bf16 matmuls are fast (AMX, GPUs).

- RMSNorm: the model's own norm is ~9 element-wise operations forward and ~15 in autograd's backward, each a pass
  over the activation in float32; six of them per Gemma 3 layer. Here it is one autograd function with the
  backward written out (10 passes, saving the input in its own dtype instead of float32 intermediates). Same
  arithmetic forward (float32 statistics, the model's own order of scaling and casting); gradients equal up to
  rounding. Installed on the norm classes whose forward was read and matched (`GEMMA_STYLE`, `LLAMA_STYLE`).
- attention on a CPU: the SDPA flash-attention kernel's backward took 2-4x the time of the eager (matmul +
  softmax) attention's at Gemma 3's and BERT's shapes, 24 to 128 tokens, in bf16 and in float32; forward-only they
  are even, so inference keeps SDPA and only a CPU training run switches to eager. GPUs keep SDPA.

Each change is per instance (the classes stay as transformers made them), so other models in the process are
untouched. docs/benchmarks.md ("CPU with bf16/AMX") has the profile and the measured gain of each.
"""

from __future__ import annotations

import types
from typing import Any

# (x.float() * rsqrt(mean(x^2) + eps) * (1 + w.float())).type_as(x)
GEMMA_STYLE = frozenset({"GemmaRMSNorm", "Gemma2RMSNorm", "Gemma3RMSNorm"})
# w * (x.float() * rsqrt(mean(x^2) + eps)).to(x.dtype)
LLAMA_STYLE = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "MixtralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm",
                         "Phi3RMSNorm"})


def prepare_for_training(model: Any, device_type: str) -> dict[str, int]:
    """Install the fast paths that fit `model` on `device_type`; returns what was changed, counted."""
    changed = {"rms_norm": fuse_rms_norms(model)}
    if device_type == "cpu":
        changed["eager_attention"] = eager_attention(model)
    return changed


# ------------------------------------------------------------------------------------------------ RMSNorm
def _rms_norm_function() -> Any:
    import torch

    class RMSNorm(torch.autograd.Function):
        """forward(x, weight, eps, gemma): the model's RMSNorm; backward written out."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, eps: float, gemma: bool) -> Any:
            xf = x.float()
            rstd = torch.rsqrt(xf.square().mean(-1, keepdim=True).add_(eps))
            ctx.save_for_backward(x, rstd, weight)
            ctx.gemma = gemma
            if gemma:
                return (xf * rstd).mul_(weight.float() + 1.0).to(x.dtype)
            return weight * (xf * rstd).to(x.dtype)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, rstd, weight = ctx.saved_tensors
            xhat = x.float().mul_(rstd)
            if ctx.gemma:
                grad_xhat = grad.float() * (weight.float() + 1.0)
                grad_weight = (grad.float() * xhat).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
            else:
                grad_xhat = (grad * weight).float()
                grad_weight = ((grad * xhat.to(x.dtype)).flatten(0, -2).sum(0).to(weight.dtype)
                               if ctx.needs_input_grad[1] else None)
            dot = (grad_xhat * xhat).mean(-1, keepdim=True)
            grad_x = grad_xhat.sub_(xhat.mul_(dot)).mul_(rstd).to(x.dtype)
            if grad_weight is not None:
                grad_weight = grad_weight.to(weight.dtype)
            return grad_x, grad_weight, None, None

    return RMSNorm


_FUNCTION: list[Any] = []


def rms_norm(x: Any, weight: Any, eps: float, *, gemma: bool) -> Any:
    """The RMSNorm of a Gemma-style (`gemma`) or Llama-style norm through the written-out backward."""
    if not _FUNCTION:
        _FUNCTION.append(_rms_norm_function())
    return _FUNCTION[0].apply(x, weight, eps, gemma)


def _gemma_forward(self: Any, x: Any) -> Any:
    return rms_norm(x, self.weight, self.eps, gemma=True)


def _llama_forward(self: Any, x: Any) -> Any:
    return rms_norm(x, self.weight, self.variance_epsilon, gemma=False)


def fuse_rms_norms(model: Any) -> int:
    """Give every norm of a known family in `model` the written-out function; returns how many."""
    count = 0
    for module in model.modules():
        name = type(module).__name__
        if module.__dict__.get("forward") is not None or getattr(module, "weight", None) is None:
            continue
        if name in GEMMA_STYLE and hasattr(module, "eps"):
            module.forward = types.MethodType(_gemma_forward, module)
        elif name in LLAMA_STYLE and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_llama_forward, module)
        else:
            continue
        count += 1
    return count


# ---------------------------------------------------------------------------------------------- attention
def eager_attention(model: Any) -> int:
    """Switch every (sub)model using SDPA to eager attention; returns how many switched (a config shared by a
    wrapper and the model it wraps switches once)."""
    from transformers import PreTrainedModel

    count = 0
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and getattr(module.config, "_attn_implementation", None) == "sdpa":
            try:
                module.set_attn_implementation("eager")
            except (ValueError, ImportError, AttributeError):  # a model that cannot switch keeps SDPA
                continue
            count += 1
    return count
