"""Endless shuffled passes over one language's examples; position, RNG and pending batches are saved with
checkpoints, so a resumed run draws exactly the batches an uninterrupted one would."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

GROUP = 32  # batches sorted by length together: enough to pad little, few enough to keep batches varied


class LanguageStream:
    """Indices of one language's examples: a fresh permutation per epoch, drawn from a seeded generator.

    With `lengths`, batches come from groups: the indices of GROUP batches are sorted by length and cut into
    batches, which are served in random order, so a batch pads its rows to a similar length (often half the
    tokens of a random batch) while every example is still seen once per epoch."""

    def __init__(self, size: int, seed: int, lengths: Sequence[int] | None = None):
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(size)
        self.position = 0
        self.epoch = 0
        self._lengths = np.asarray(lengths) if lengths is not None else None
        self._pending: list[list[int]] = []  # sorted batches not served yet

    def take(self, n: int) -> list[int]:
        """The next `n` indices of the permutation (a new permutation at the end of each epoch)."""
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

    def batch(self, n: int) -> list[int]:
        """The next batch of `n` indices: length-grouped when lengths were given, else straight from `take`."""
        if self._lengths is None:
            return self.take(n)
        if not self._pending or len(self._pending[0]) != n:
            # a group ends at the epoch's end (only a last partial batch reaches into the next epoch), so every
            # row is served once per epoch and none twice in a batch
            remaining = self.size - self.position if self.position < self.size else self.size
            pool = self.take(n * max(1, min(GROUP, remaining // n)))
            pool.sort(key=lambda i: int(self._lengths[i]))  # type: ignore[index]
            batches = [pool[i : i + n] for i in range(0, len(pool), n)]
            self._pending = [batches[int(i)] for i in self._rng.permutation(len(batches))]
        return self._pending.pop(0)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "order": self._order.tolist(), "position": self.position,
                "epoch": self.epoch, "pending": self._pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = np.array(state["order"], dtype=np.int64)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
        self._pending = [list(map(int, b)) for b in state.get("pending", [])]
