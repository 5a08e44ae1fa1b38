"""Built-in language samplers: proportional, uniform, temperature, UniMax and round-robin.

Formulas (see the design notes): with p_k = n_k / sum(n), temperature sampling draws language k with
q_k = p_k^alpha / sum_j p_j^alpha (alpha = 1 proportional, 0 uniform); UniMax (Chung et al., 2023) spreads
a budget of B examples over languages from smallest to largest, none repeated more than N epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from xft_core.hooks import ProbabilitySampler, SamplerSpec, hookimpl, proportions


@dataclass(frozen=True, kw_only=True)
class TemperatureOptions:
    alpha: float = 0.3

    def __post_init__(self):
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"temperature: alpha must be in [0, 1] (0 uniform, 1 proportional), got {self.alpha}")


@dataclass(frozen=True, kw_only=True)
class UniMaxOptions:
    budget: int = 0  # total examples to spread; 0 = the sum of all languages' sizes
    max_epochs: float = 1.0  # at most this many passes over any one language

    def __post_init__(self):
        if self.budget < 0:
            raise ValueError(f"unimax: budget must be >= 0 (0 = total size), got {self.budget}")
        if self.max_epochs <= 0:
            raise ValueError(f"unimax: max_epochs must be positive, got {self.max_epochs}")


def temperature_probabilities(sizes: Mapping[str, int], alpha: float) -> dict[str, float]:
    p = proportions(sizes)
    weights = {k: v**alpha for k, v in p.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def unimax_allocation(sizes: Mapping[str, int], budget: float, max_epochs: float) -> dict[str, float]:
    """Examples allotted to each language: smallest first, min(N * n_i, B_remaining / languages left)."""
    ordered = sorted((n, k) for k, n in sizes.items() if n > 0)
    remaining = float(budget)
    allocation: dict[str, float] = {}
    for i, (n, language) in enumerate(ordered):
        share = min(max_epochs * n, remaining / (len(ordered) - i))
        allocation[language] = share
        remaining -= share
    return allocation


def _unimax(sizes: Mapping[str, int], options: UniMaxOptions, seed: int) -> ProbabilitySampler:
    budget = options.budget or sum(sizes.values())
    return ProbabilitySampler(unimax_allocation(sizes, budget, options.max_epochs), seed)


class RoundRobinSampler(ProbabilitySampler):
    """Languages in a fixed cycle; the state is the position in the cycle."""

    def __init__(self, sizes: Mapping[str, int], seed: int):
        super().__init__({k: 1.0 for k, n in sizes.items() if n > 0}, seed)

    def next_language(self) -> str:
        language = self.languages[self.draws % len(self.languages)]
        self.draws += 1
        return language


@hookimpl
def xft_samplers():
    yield SamplerSpec(
        name="proportional",
        build=lambda sizes, options, seed: ProbabilitySampler(proportions(sizes), seed),
        description="Each language in proportion to its number of examples (q_k = p_k).",
    )
    yield SamplerSpec(
        name="uniform",
        build=lambda sizes, options, seed: ProbabilitySampler({k: 1.0 for k, n in sizes.items() if n > 0}, seed),
        description="Every language equally often, whatever its size.",
    )
    yield SamplerSpec(
        name="temperature",
        options=TemperatureOptions,
        build=lambda sizes, options, seed: ProbabilitySampler(temperature_probabilities(sizes, options.alpha), seed),
        description="q_k = p_k^alpha / sum p_j^alpha (XLM-R/mT5 use alpha about 0.3).",
    )
    yield SamplerSpec(
        name="unimax",
        options=UniMaxOptions,
        build=_unimax,
        description="UniMax: uniform over languages, capped at max_epochs passes of the small ones.",
    )
    yield SamplerSpec(
        name="round_robin",
        build=lambda sizes, options, seed: RoundRobinSampler(sizes, seed),
        description="Languages in a fixed cycle, one batch each.",
    )
