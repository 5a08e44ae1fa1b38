"""The adapters loaded on the router's one model: LRU order, pins, all-or-nothing attach, eviction that frees memory.

Why all or nothing: a live server shares one base model between every adapter, so a load that fails halfway
(a truncated file, weights of the wrong shape, a package made for another model) must not leave anything behind:
no half-injected layer, no stray adapter counted against the capacity, no changed flag. The strategy promises
this (`Strategy.attach`), and the cache checks it: the model's module tree is recorded before each attach and put
back exactly, object for object, when the attach raises; a strategy that leaves debris is logged.

Why attach before evict: a failed load must not have evicted anything either, so the new adapter comes in first
(the cache holds capacity + 1 adapters for a moment) and only then the least recently used one goes.
"""

from __future__ import annotations

import gc
import logging
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xft_core.adapters import AdapterError
from xft_core.hooks import BASE_ADAPTER as BASE
from xft_core.hooks import Strategy, TaskHead
from xft_core.inference.packages import RouterStats

log = logging.getLogger("xft.serve")


@dataclass(frozen=True)
class Loaded:
    """One adapter on the model: its slot (the name the strategy knows it by) and the version and content hash of
    the files it was loaded from, which every prediction it makes reports."""

    slot: str
    version: int
    hash: str


class ModuleTree:
    """Enough of a torch module tree to put it back exactly: every module's children, parameters and buffers (the
    objects themselves, not copies), its attribute names and training flag, and every parameter's requires_grad.
    Parameter values are not recorded: strategies must not write into existing tensors (LoRA's attach checks
    every key of a package before loading it)."""

    def __init__(self, model: Any):
        self.model = model
        self.modules = [(m, dict(m._modules), dict(m._parameters), dict(m._buffers), set(vars(m)), m.training)
                        for m in model.modules()]
        self.flags = [(p, p.requires_grad) for p in model.parameters()]

    def restore(self) -> list[str]:
        """Put everything back; returns what had changed (empty when the tree is as it was)."""
        changed: list[str] = []
        for module, children, parameters, buffers, attributes, training in self.modules:
            for what, now, then in (("children", module._modules, children), ("parameters", module._parameters, parameters),
                                    ("buffers", module._buffers, buffers)):
                if now.keys() != then.keys() or any(now[k] is not v for k, v in then.items()):
                    changed.append(f"{type(module).__name__} {what}")
                    now.clear()
                    now.update(then)
            for extra in set(vars(module)) - attributes:
                changed.append(f"{type(module).__name__}.{extra}")
                delattr(module, extra)
            module.training = training
        for parameter, flag in self.flags:
            if parameter.requires_grad != flag:
                parameter.requires_grad_(flag)
        return changed


class AdapterCache:
    """Loaded adapters, least recently used first; pinned ones are never evicted. Not thread-safe on its own: the
    router calls it under its lock."""

    def __init__(self, model: Any, head: TaskHead, capacity: int, stats: RouterStats):
        self.model = model  # the base, or the strategy's model carrying the loaded adapters
        self.head = head
        self.capacity = capacity
        self.stats = stats
        self.strategy: Strategy | None = None  # set by the router from the first registered package
        self.loaded: OrderedDict[str, Loaded] = OrderedDict()
        self.pinned: set[str] = set()
        self._cuda = next(model.parameters()).device.type == "cuda"

    def slot(self, name: str) -> str:
        return self.loaded[name].slot

    def touch(self, name: str) -> None:
        self.stats.hits += 1
        self.loaded.move_to_end(name)

    def plan(self, names: list[str]) -> list[list[str]]:
        """Split the adapters one batch needs into groups that fit in the cache together, each in the order the
        batch first names them (so the LRU order after a batch never depends on set iteration order)."""
        needed = list(dict.fromkeys(n for n in names if n != BASE))
        pinned = [n for n in needed if n in self.pinned]
        others = [n for n in needed if n not in self.pinned]
        room = self.capacity - len(self.pinned)
        if others and room < 1:
            raise AdapterError(f"adapter cache is full of pinned adapters ({', '.join(sorted(self.pinned))}); "
                               f"raise capacity above {self.capacity} or unpin one")
        chunks = [others[i : i + room] for i in range(0, len(others), max(room, 1))] or [[]]
        groups = [list(chunk) for chunk in chunks]
        groups[0] += pinned + ([BASE] if BASE in names else [])
        return groups

    def check_room(self, name: str, protect: set[str]) -> None:
        """Refuse, before any work, a load that would find no adapter to evict."""
        if name in self.loaded or len(self.loaded) < self.capacity:
            return
        if not any(n not in self.pinned and n not in protect for n in self.loaded):
            raise AdapterError(f"adapter cache full ({self.capacity}): every loaded adapter is pinned or needed by this "
                               "batch; raise capacity or unpin one")

    def add(self, name: str, folder: Path, entry: Loaded, protect: set[str]) -> None:
        """Attach the package in `folder` as `entry.slot` and make it `name`'s loaded version (replacing the one
        loaded before, which is detached), then evict over capacity. All or nothing."""
        self.check_room(name, protect)
        self.attach(folder, entry.slot)
        previous = self.loaded.get(name)
        self.loaded[name] = entry  # a new one comes last (most recent); a replaced one keeps its place
        if previous is not None:
            self.detach(previous.slot)
        while len(self.loaded) > self.capacity:
            self._evict(protect | {name})

    def remove(self, name: str) -> None:
        self.pinned.discard(name)
        if name in self.loaded:
            self.detach(self.loaded.pop(name).slot)

    def attach(self, folder: Path, slot: str) -> None:
        assert self.strategy is not None  # set by the first registered package
        started = time.perf_counter()
        tree = ModuleTree(self.model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = self.strategy.attach(self.model, folder, slot, self.head)
            model.eval()
        except BaseException:
            self.stats.failed_loads += 1
            debris = tree.restore()
            if debris:
                log.warning("a failed attach of %s left %d changes on the model (%s); put back", slot, len(debris),
                            ", ".join(debris[:5]))
            raise
        self.model = model
        self.stats.loads += 1
        self.stats.load_seconds += time.perf_counter() - started

    def detach(self, slot: str) -> None:
        """Remove one adapter's weights from the model and let the memory go."""
        assert self.strategy is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active, setting Y active" is expected here
            self.model = self.strategy.detach(self.model, slot)
        # For LoRA, peft 0.21 holds no reference cycles through a deleted adapter, so reference counting frees its
        # tensors at once (tests/test_router.py checks this with weak references); a young-generation pass
        # catches small cycles for ~1 ms, where a full collection costs 0.1-0.3 s in a process holding torch
        # and transformers, too much to pay per eviction. Unloading the last adapter (rare) gets the full one.
        gc.collect() if not self.loaded else gc.collect(1)
        if self._cuda:
            import torch

            torch.cuda.empty_cache()  # hand the freed blocks back, so other processes (and nvidia-smi) see them

    def _evict(self, protect: set[str]) -> None:
        for name in self.loaded:
            if name not in self.pinned and name not in protect:
                self.detach(self.loaded.pop(name).slot)
                self.stats.evictions += 1
                return
        raise AdapterError(f"adapter cache full ({self.capacity}): every loaded adapter is pinned or needed by this batch; "
                           "raise capacity or unpin one")
