"""The `curriculum` sampler: language shares that move over training, from proportional to uniform by default.

With p_k = n_k / sum(n) and the temperature distribution q_a(k) = p_k^a / sum_j p_j^a (a = 1 proportional, 0 uniform),
the share of training done t (0 to 1, told by the engine through `set_progress` before every draw) gives

    q(t) = (1 - t) q_start + t q_end

a straight line between the two distributions: early batches follow the data (the large languages dominate, as in
plain multilingual training), late batches give every language its turn (the small ones catch up at the end).

Built on `xft_core.hooks.ProbabilitySampler` (one seeded numpy generator whose state is saved, so a resumed run
draws the same languages), with `set_progress` moving its probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from xft_core.hooks import ProbabilitySampler, proportions


@dataclass(frozen=True, kw_only=True)
class CurriculumOptions:
    start: float = 1.0  # temperature exponent at the start of training (1: proportional)
    end: float = 0.0  # temperature exponent at the end of training (0: uniform)

    def __post_init__(self):
        for key in ("start", "end"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"curriculum: {key} must be a number in [0, 1] (1 proportional, 0 uniform), got {value!r}")


def temperature(p: Mapping[str, float], alpha: float) -> dict[str, float]:
    weights = {k: v**alpha for k, v in p.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def curriculum_probabilities(sizes: Mapping[str, int], options: CurriculumOptions, done: float) -> dict[str, float]:
    """q(done) = (1 - done) q_start + done q_end over the languages with examples; `done` is clamped to [0, 1]."""
    t = min(1.0, max(0.0, float(done)))
    p = proportions(sizes)
    first, last = temperature(p, options.start), temperature(p, options.end)
    return {k: (1 - t) * first[k] + t * last[k] for k in sorted(p)}


class CurriculumSampler(ProbabilitySampler):
    """Draws the next batch's language from q(t), t the share of training done: `ProbabilitySampler` draws,
    counts and saves the generator's state; this class only moves the probabilities as the engine reports
    progress (and saves that progress too, so a resumed run draws from the same q)."""

    def __init__(self, sizes: Mapping[str, int], options: CurriculumOptions, seed: int):
        self.options = options
        self.sizes = {k: int(n) for k, n in sizes.items() if n > 0}
        if not self.sizes:
            raise ValueError("curriculum: no training examples in any language")
        self.progress = 0.0
        super().__init__(curriculum_probabilities(self.sizes, options, 0.0), seed)

    def set_progress(self, done: float) -> None:
        import numpy as np

        done = min(1.0, max(0.0, float(done)))
        if done != self.progress:
            q = curriculum_probabilities(self.sizes, self.options, done)
            self.progress, self._q = done, np.array([q[k] for k in self.languages], dtype=np.float64)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "progress": self.progress}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.set_progress(float(state.get("progress", 0.0)))
