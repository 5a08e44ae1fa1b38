"""Public helpers for language samplers: a base class that draws languages from fixed probabilities.

A sampler plugin only has to compute its target probabilities; drawing, counting and saving state
(so that a resumed run draws the same languages) live here.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from xft_core.util.errors import UserError


class ProbabilitySampler:
    """Draws a language with probability `q[language]` from a seeded generator whose state is saveable."""

    def __init__(self, probabilities: Mapping[str, float], seed: int):
        total = float(sum(probabilities.values()))
        if not probabilities or total <= 0:
            raise UserError("a sampler needs at least one language with a positive probability")
        self.languages = sorted(probabilities)
        self._q = np.array([probabilities[k] / total for k in self.languages], dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self.counts: dict[str, int] = {k: 0 for k in self.languages}
        self.draws = 0

    def probabilities(self) -> dict[str, float]:
        return {k: float(q) for k, q in zip(self.languages, self._q)}

    def set_progress(self, done: float) -> None:
        """Fixed probabilities: the share of training done changes nothing (schedules override this)."""

    def next_language(self) -> str:
        self.draws += 1
        return self.languages[int(self._rng.choice(len(self.languages), p=self._q))]

    def record(self, language: str, examples: int) -> None:
        self.counts[language] = self.counts.get(language, 0) + int(examples)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "counts": dict(self.counts), "draws": self.draws}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.counts = dict(state["counts"])
        self.draws = int(state.get("draws", 0))


def proportions(sizes: Mapping[str, int]) -> dict[str, float]:
    """p_k = n_k / sum(n); languages with no examples are dropped."""
    total = sum(n for n in sizes.values() if n > 0)
    if total <= 0:
        raise UserError("no training examples in any language")
    return {k: n / total for k, n in sizes.items() if n > 0}
