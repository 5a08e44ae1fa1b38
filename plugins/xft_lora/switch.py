"""The adapter switch at inference, without peft's `set_adapter`, and the fallback to it.

peft's `set_adapter` walks every module of the model and re-sets requires_grad on each adapter tensor (about 4 ms on
Gemma 3 270M). At inference nothing trains, so only the active name has to change, on the adapter layers found once
per attached set (about 130 on that model): `fast_switch` writes it into each layer's `__dict__` (`_active_adapter`,
peft's private attribute, where `nn.Module.__setattr__` would put it after checking parameters, buffers and
submodules; ~1 us a layer: 218 -> 24 us median, docs/benchmarks.md).

That reads and writes peft internals (`_active_adapter`, a head copy's `check_set_adapter` and `_adapters`), which a
peft release may move. So the first switch on each attached set is checked against peft's public view
(`active_adapters` of every layer); when an internal is missing or the check fails, `fast_switch` says so and the
strategy uses peft's own `set_adapter` from then on: slower, the same result (tests/test_peft_internals.py forces it).
"""

from __future__ import annotations

from typing import Any, Sequence


def fast_switch(layers: Sequence[Any], name: str, *, verify: bool) -> bool:
    """Make `name` the active adapter of every adapter layer and head copy in `layers` by writing peft's private
    attribute; with `verify`, check that peft's public `active_adapters` now reads what was written. False: an
    internal is missing or moved, and the caller must switch through peft instead (nothing is left half-written that
    peft's `set_adapter` does not overwrite)."""
    from peft.utils import AuxiliaryTrainingWrapper

    written: list[tuple[Any, list[str]]] = []
    try:
        for module in layers:
            if isinstance(module, AuxiliaryTrainingWrapper):  # the head copy (modules_to_save)
                wanted = module.check_set_adapter(name)
                value: Any = wanted if wanted in module._adapters else []
            else:
                value = [name]
            if "_active_adapter" not in module.__dict__:  # peft keeps it elsewhere now
                return False
            module.__dict__["_active_adapter"] = value
            written.append((module, [value] if isinstance(value, str) else list(value)))
        if verify:
            return all(list(module.active_adapters) == expected for module, expected in written)
    except (AttributeError, TypeError, NotImplementedError):
        return False
    return True
