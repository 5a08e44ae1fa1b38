"""Frozen-prefix cache: with `top_layers`, the layers below the lowest adapted one never change during training, so
their output for a training row is the same in every epoch. The first time a row is seen its output of the last
frozen layer is kept; afterwards the forward skips the frozen layers for batches whose rows are all known and
starts at the first adapted layer. The result is bit-for-bit what the full forward computes, provided:

- the frozen layers are deterministic in training (no dropout with p > 0 in them: checked, else no cache);
- a row's output does not depend on its batch: right padding, so real tokens keep positions 0..n-1 and a causal
  model's real tokens never attend to the pads after them (checked per batch; left-padded batches are not cached);
- only training forwards use it (eval forwards run in full).

It only ever replaces what the lower layers would have returned, and only for rows it has seen whole.
"""

from __future__ import annotations

import types
from typing import Any

DEFAULT_BUDGET = 2 << 30  # bytes of cached hidden states at most (2 GiB); rows beyond it are computed every time


def transformer_layers(model: Any, count: int) -> Any | None:
    """The ModuleList of the model's `count` transformer layers (`layers` in decoders, `layer` in BERT), or None."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count and name.rsplit(".", 1)[-1] in ("layers", "layer"):
            return module
    return None


def is_deterministic(model: Any, layers: Any) -> bool:
    """No dropout in `layers` while training: no Dropout module with p > 0, no attention dropout in the config."""
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(float(getattr(config, key, 0) or 0) > 0 for key in ("attention_dropout", "attention_probs_dropout_prob")):
        return False
    return not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for layer in layers for m in layer.modules())


class FrozenPrefixCache:
    """Keeps the last frozen layer's output per training row; replays it for batches of known rows."""

    def __init__(self, model: Any, layers: Any, first_adapted: int, budget: int = DEFAULT_BUDGET):
        self.model, self.layers, self.first = model, layers, first_adapted
        self.budget, self.used = budget, 0
        self.store: dict[bytes, Any] = {}
        self.mode = "off"  # per forward: "record", "replay" or "off"
        self.disabled = False  # set when a layer's output is not a plain tensor (nothing is cached then)
        self.rows: list[tuple[bytes, int]] = []  # (key, length) per row of the current batch
        self.hits = self.misses = 0
        self._handle = model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        for index in range(first_adapted):
            layer = layers[index]
            layer._xft_forward = layer.forward
            layer.forward = types.MethodType(_last_frozen if index == first_adapted - 1 else _skipped, layer)
            layer._xft_cache = self

    def remove(self) -> None:
        self._handle.remove()
        for index in range(self.first):
            layer = self.layers[index]
            layer.forward = layer._xft_forward
            del layer._xft_forward, layer._xft_cache
        self.store.clear()

    def _before_forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.mode, self.rows = "off", []
        if self.disabled:
            return
        input_ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if input_ids is None and args:
            input_ids = args[0]
        if not module.training or input_ids is None or mask is None or kwargs.get("inputs_embeds") is not None:
            return
        lengths = mask.sum(dim=1)
        width = mask.shape[1]
        positions = mask.new_ones(mask.shape).cumsum(dim=1)
        if not bool(((positions <= lengths[:, None]) == mask.bool()).all()):  # not right-padded: rows depend on width
            return
        ids = input_ids.detach().cpu()
        self.rows = [(ids[i, : int(n)].numpy().tobytes(), int(n)) for i, n in enumerate(lengths.tolist())]
        known = all(key in self.store for key, _ in self.rows)
        self.mode = "replay" if known else "record"
        self.hits += len(self.rows) if known else 0
        self.misses += 0 if known else len(self.rows)
        self._width = width

    def replay(self, like: Any) -> Any:
        """The cached outputs of this batch's rows, right-padded to the batch width (zeros at the pads)."""
        import torch

        out = torch.zeros(len(self.rows), self._width, like.shape[-1], dtype=like.dtype, device=like.device)
        for i, (key, n) in enumerate(self.rows):
            out[i, :n] = self.store[key].to(device=like.device, dtype=like.dtype)
        return out

    def record(self, hidden: Any) -> None:
        for i, (key, n) in enumerate(self.rows):
            if key not in self.store and self.used < self.budget:
                value = hidden[i, :n].detach().to("cpu").clone()
                self.store[key] = value
                self.used += value.numel() * value.element_size()


def _skipped(self: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
    """A frozen layer below the last one: nothing to compute when the batch is replayed."""
    cache = self._xft_cache
    if cache.mode == "replay":
        return hidden_states
    return self._xft_forward(hidden_states, *args, **kwargs)


def _last_frozen(self: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
    """The last frozen layer: its cached output on replay; computed and kept on record."""
    cache = self._xft_cache
    if cache.mode == "replay":
        return cache.replay(hidden_states)
    output = self._xft_forward(hidden_states, *args, **kwargs)
    if cache.mode == "record":
        if isinstance(output, tuple):  # a layer returning more than its hidden states: do not try to stand in for it
            cache.disabled = True
        else:
            cache.record(output)
    return output
