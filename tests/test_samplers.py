"""Built-in language samplers (plugins/xft_samplers): probabilities against the published formulas (temperature
sampling; UniMax, Chung et al. 2023), empirical shares of real draws, round-robin order, counting, and state that
survives a JSON checkpoint."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from xft_core.config import ConfigError, build_options
from xft_core.hooks.manager import collect, get_spec

SIZES = {"en": 1000, "de": 100, "sw": 10}
DRAWS = 20_000
SIGMAS = 4.0


def build_sampler(pm, name: str, sizes, options=None, seed: int = 0):
    spec = get_spec(pm, "samplers", name, config_key="sampler")
    return spec.build(sizes, build_options(spec.options, options or {}, key="sampler_options"), seed)


def temperature_expected(sizes, alpha: float) -> dict[str, float]:
    """q_k = p_k^alpha / sum_j p_j^alpha with p_k = n_k / sum(n) (temperature sampling, as in XLM and mT5)."""
    total = sum(sizes.values())
    weights = {k: (n / total) ** alpha for k, n in sizes.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


def unimax_expected(sizes, budget: float, max_epochs: float) -> dict[str, float]:
    """Allocation by the UniMax procedure (Chung et al. 2023): smallest first, min(N * n_i, B_remaining / (L - i))."""
    languages = sorted(sizes, key=lambda k: sizes[k])
    remaining = float(budget)
    allocation = {}
    for position, language in enumerate(languages):
        languages_left = len(languages) - position
        allocation[language] = min(max_epochs * sizes[language], remaining / languages_left)
        remaining -= allocation[language]
    return allocation


def assert_probabilities(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert set(actual) == set(expected)
    for language, q in expected.items():
        assert actual[language] == pytest.approx(q, rel=1e-12, abs=1e-15), language
    assert sum(actual.values()) == pytest.approx(1.0, abs=1e-12)


def assert_empirical_shares(sampler, expected: dict[str, float], draws: int = DRAWS) -> None:
    """Shares of `draws` real draws lie within SIGMAS binomial standard errors of the target q_k."""
    counts = Counter(sampler.next_language() for _ in range(draws))
    assert set(counts) <= set(expected), f"drew a language outside the target set: {set(counts) - set(expected)}"
    for language, q in expected.items():
        share = counts[language] / draws
        sigma = math.sqrt(q * (1 - q) / draws)
        assert abs(share - q) <= SIGMAS * sigma + 1e-12, f"{language}: share {share:.5f}, target {q:.5f} (sigma {sigma:.5f})"


# ------------------------------------------------------------------------------------------ temperature
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_temperature_probabilities_follow_the_formula_and_draws_match(pm, alpha):
    sampler = build_sampler(pm, "temperature", SIZES, {"alpha": alpha}, seed=11)
    expected = temperature_expected(SIZES, alpha)
    assert_probabilities(sampler.probabilities(), expected)
    assert_empirical_shares(sampler, expected)


def test_temperature_alpha_0_is_uniform_and_alpha_1_is_proportional(pm):
    uniform = build_sampler(pm, "uniform", SIZES).probabilities()
    proportional = build_sampler(pm, "proportional", SIZES).probabilities()
    total = sum(SIZES.values())
    assert_probabilities(uniform, {k: 1 / len(SIZES) for k in SIZES})
    assert_probabilities(proportional, {k: n / total for k, n in SIZES.items()})
    assert_probabilities(build_sampler(pm, "temperature", SIZES, {"alpha": 0}).probabilities(), uniform)
    assert_probabilities(build_sampler(pm, "temperature", SIZES, {"alpha": 1}).probabilities(), proportional)


def test_temperature_flattens_monotonically_between_proportional_and_uniform(pm):
    """Lowering alpha moves share from the largest language to the smallest (the point of the sampler)."""
    shares = [build_sampler(pm, "temperature", SIZES, {"alpha": a}).probabilities() for a in (1.0, 0.7, 0.3, 0.0)]
    assert [s["en"] for s in shares] == sorted((s["en"] for s in shares), reverse=True)
    assert [s["sw"] for s in shares] == sorted(s["sw"] for s in shares)


def test_languages_without_examples_are_never_drawn(pm):
    sizes = {"en": 50, "de": 0, "sw": 5}
    for name in ("proportional", "uniform", "temperature", "unimax", "round_robin"):
        sampler = build_sampler(pm, name, sizes, seed=3)
        assert "de" not in sampler.probabilities(), name
        assert "de" not in {sampler.next_language() for _ in range(200)}, name


# ---------------------------------------------------------------------------------------------- unimax
UNIMAX_SIZES = {"en": 5000, "yo": 10, "de": 2000, "sw": 50}  # not in size order: the sampler must sort
UNIMAX_OPTIONS = {"budget": 4000, "max_epochs": 2}


def test_unimax_caps_small_languages_and_shares_the_rest_evenly(pm):
    budget, epochs = UNIMAX_OPTIONS["budget"], UNIMAX_OPTIONS["max_epochs"]
    allocation = unimax_expected(UNIMAX_SIZES, budget, epochs)
    # the example is chosen so that both regimes occur: small ones at the cap, large ones equal
    assert allocation["yo"] == epochs * UNIMAX_SIZES["yo"]
    assert allocation["sw"] == epochs * UNIMAX_SIZES["sw"]
    assert allocation["de"] == allocation["en"] < epochs * UNIMAX_SIZES["de"]
    assert sum(allocation.values()) == pytest.approx(budget)

    sampler = build_sampler(pm, "unimax", UNIMAX_SIZES, UNIMAX_OPTIONS, seed=5)
    expected = {k: a / sum(allocation.values()) for k, a in allocation.items()}
    assert_probabilities(sampler.probabilities(), expected)
    assert_empirical_shares(sampler, expected)


@pytest.mark.parametrize("budget,epochs", [(4000, 2), (2000, 1), (700, 4), (7060, 1)])
def test_unimax_never_repeats_a_language_more_than_max_epochs(pm, budget, epochs):
    """Spending budget B draws B * q_i examples of language i on average; that never exceeds N * n_i."""
    assert sum(epochs * n for n in UNIMAX_SIZES.values()) >= budget  # the budget can be spent within the caps
    sampler = build_sampler(pm, "unimax", UNIMAX_SIZES, {"budget": budget, "max_epochs": epochs})
    q = sampler.probabilities()
    allocation = unimax_expected(UNIMAX_SIZES, budget, epochs)
    assert sum(allocation.values()) == pytest.approx(budget)
    assert_probabilities(q, {k: a / budget for k, a in allocation.items()})
    for language, n in UNIMAX_SIZES.items():
        assert budget * q[language] <= epochs * n * (1 + 1e-9), language


def test_unimax_budget_beyond_all_caps_gives_every_language_its_cap(pm):
    """With more budget than N * sum(n), every language is capped: q_i is proportional to N * n_i."""
    epochs = 1.5
    sampler = build_sampler(pm, "unimax", UNIMAX_SIZES, {"budget": 50_000, "max_epochs": epochs})
    caps = {k: epochs * n for k, n in UNIMAX_SIZES.items()}
    assert_probabilities(sampler.probabilities(), {k: c / sum(caps.values()) for k, c in caps.items()})


def test_unimax_default_budget_is_the_total_size(pm):
    total = sum(UNIMAX_SIZES.values())
    allocation = unimax_expected(UNIMAX_SIZES, total, 1.0)
    expected = {k: a / sum(allocation.values()) for k, a in allocation.items()}
    assert_probabilities(build_sampler(pm, "unimax", UNIMAX_SIZES, {"max_epochs": 1}).probabilities(), expected)


# ----------------------------------------------------------------------------------------- round robin
def test_round_robin_cycles_every_language_once_per_round(pm):
    sampler = build_sampler(pm, "round_robin", SIZES, seed=123)
    rounds = 5
    drawn = [sampler.next_language() for _ in range(rounds * len(SIZES))]
    first_round = drawn[: len(SIZES)]
    assert sorted(first_round) == sorted(SIZES)
    assert first_round == sorted(SIZES)  # fixed, documented order: sorted language codes
    assert drawn == first_round * rounds
    assert_probabilities(sampler.probabilities(), {k: 1 / len(SIZES) for k in SIZES})


def test_round_robin_order_does_not_depend_on_seed_or_insertion_order(pm):
    a = build_sampler(pm, "round_robin", {"sw": 1, "en": 9, "de": 4}, seed=1)
    b = build_sampler(pm, "round_robin", {"de": 4, "sw": 1, "en": 9}, seed=99)
    assert [a.next_language() for _ in range(7)] == [b.next_language() for _ in range(7)]


def test_record_counts_examples_per_language(pm):
    sampler = build_sampler(pm, "temperature", SIZES)
    assert sampler.counts == {k: 0 for k in SIZES}
    batches = [("en", 8), ("sw", 8), ("en", 3), ("de", 8), ("en", 8)]
    for language, examples in batches:
        sampler.record(language, examples)
    expected = {k: 0 for k in SIZES}
    for language, examples in batches:
        expected[language] += examples
    assert sampler.counts == expected


# ------------------------------------------------------------------------------------------------ state
def test_every_builtin_sampler_resumes_the_same_sequence_from_a_json_state(pm):
    names = sorted(collect(pm, "samplers"))
    assert {"proportional", "uniform", "temperature", "unimax", "round_robin"} <= set(names)
    k, after = 37, 300  # k not a multiple of the language count, so round robin is mid-cycle
    for name in names:
        original = build_sampler(pm, name, SIZES, seed=2024)
        for _ in range(k):
            original.record(original.next_language(), 4)
        state = json.loads(json.dumps(original.state_dict()))  # checkpoints store sampler state as JSON
        counts_at_k = dict(original.counts)
        continued = [original.next_language() for _ in range(after)]

        restored = build_sampler(pm, name, SIZES, seed=7)  # a different seed: everything must come from the state
        restored.load_state_dict(state)
        assert restored.counts == counts_at_k, name
        assert sum(restored.counts.values()) == 4 * k, name
        assert [restored.next_language() for _ in range(after)] == continued, name

        # the comparison is meaningful: without the state the sequence differs
        unrestored = build_sampler(pm, name, SIZES, seed=7)
        assert [unrestored.next_language() for _ in range(after)] != continued, name


def test_state_is_plain_json_data(pm):
    for name in sorted(collect(pm, "samplers")):
        state = build_sampler(pm, name, SIZES).state_dict()
        assert json.loads(json.dumps(state)) == state, name


# ----------------------------------------------------------------------------------------------- options
def test_temperature_alpha_out_of_range_is_a_config_error_naming_the_key(pm):
    spec = get_spec(pm, "samplers", "temperature", config_key="sampler")
    with pytest.raises(ConfigError) as info:
        build_options(spec.options, {"alpha": 1.5}, key="sampler_options")
    message = str(info.value)
    assert "sampler_options" in message and "alpha" in message and "1.5" in message


def test_unimax_zero_max_epochs_is_a_config_error_naming_the_key(pm):
    spec = get_spec(pm, "samplers", "unimax", config_key="sampler")
    with pytest.raises(ConfigError) as info:
        build_options(spec.options, {"max_epochs": 0}, key="sampler_options")
    message = str(info.value)
    assert "sampler_options" in message and "max_epochs" in message


def test_unknown_sampler_option_lists_the_valid_ones(pm):
    spec = get_spec(pm, "samplers", "unimax", config_key="sampler")
    with pytest.raises(ConfigError) as info:
        build_options(spec.options, {"max_epoch": 2}, key="sampler_options")
    message = str(info.value)
    assert "sampler_options.max_epoch" in message and "budget" in message and "max_epochs" in message
