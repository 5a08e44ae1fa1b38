"""Endless shuffled passes over one language's examples; position and RNG are saved with checkpoints."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


class LanguageStream:
    """Indices of one language's examples: a fresh permutation per epoch, drawn from a seeded generator."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(size)
        self.position = 0
        self.epoch = 0

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.position >= self.size:
                self._order = self._rng.permutation(self.size)
                self.position = 0
                self.epoch += 1
            step = min(n - len(out), self.size - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "order": self._order.tolist(), "position": self.position,
                "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = np.array(state["order"], dtype=np.int64)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
