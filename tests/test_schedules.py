"""Schedules: exact means, exact length distributions against sampling, validation."""

import math

import numpy as np
import pytest

from bptt.engine.schedules import SCHEDULES, Schedule, make_schedule

CASES = [
    ("constant", 8, {}),
    ("minlen", 8, {}),
    ("minlen", 6, {"min_length": 5}),
    ("power", 8, {"alpha": 1.5}),
    ("power", 4, {"alpha": 3.0}),
    ("artbp", 8, {}),
    ("artbp", 1.5, {}),
]


@pytest.mark.parametrize("name,mean,extra", CASES)
def test_closed_form_survival_matches_hazard_product(name, mean, extra):
    s = make_schedule(name, mean, **extra)
    n = np.arange(1, 5001)
    generic = Schedule.survival(s, n)  # cumulative product of keep_prob
    np.testing.assert_allclose(s.survival(n), generic, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("name,mean,extra", CASES)
def test_stated_mean_is_exact_mean(name, mean, extra):
    s = make_schedule(name, mean, **extra)
    assert s.exact_mean() == pytest.approx(mean, rel=1e-9)
    # independent check: partial sum of the survival function plus its integral tail
    N = 1_000_000
    S = s.survival(np.arange(1, N + 1))
    if name == "power":
        tail = s.c ** s.alpha * (N + s.c) ** (1 - s.alpha) / (s.alpha - 1)
    elif name == "artbp":
        tail = (mean - 1) * mean / (N + mean - 1)
    else:
        tail = 0.0
    assert S.sum() + tail == pytest.approx(mean, rel=1e-6)


def chi2_critical(df, z=3.09):
    """Wilson–Hilferty approximation of the chi-square quantile (z=3.09: p = 0.001)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("name,mean,extra", CASES)
def test_sampled_lengths_match_exact_distribution(name, mean, extra):
    s = make_schedule(name, mean, **extra)
    cuts = s.sample_cuts(4000, np.random.default_rng(2024), size=40)
    lengths = np.concatenate([s.segment_lengths(c)[:-1] for c in cuts])  # drop censored
    n_max = 30
    pmf = s.length_pmf(n_max)
    expected = np.append(pmf, 1 - pmf.sum()) * len(lengths)
    observed = np.bincount(np.minimum(lengths, n_max + 1) - 1, minlength=n_max + 1)
    keep = expected > 5  # pool sparse bins into the last one
    exp_b = np.append(expected[keep], expected[~keep].sum())
    obs_b = np.append(observed[keep], observed[~keep].sum())
    if exp_b[-1] == 0:
        exp_b, obs_b = exp_b[:-1], obs_b[:-1]
    stat = np.sum((obs_b - exp_b) ** 2 / exp_b)
    df = len(exp_b) - 1
    assert stat < chi2_critical(df), (stat, df)
    # and the sample is large enough for the test to have teeth
    assert len(lengths) > 10_000


def test_regular_like_schedule_is_rejected_by_the_test():
    """The chi-square test above detects a wrong distribution (it can fail)."""
    right = make_schedule("constant", 8)
    wrong = make_schedule("constant", 9)
    cuts = wrong.sample_cuts(4000, np.random.default_rng(2024), size=40)
    lengths = np.concatenate([wrong.segment_lengths(c)[:-1] for c in cuts])
    pmf = right.length_pmf(30)
    expected = np.append(pmf, 1 - pmf.sum()) * len(lengths)
    observed = np.bincount(np.minimum(lengths, 31) - 1, minlength=31)
    stat = np.sum((observed - expected) ** 2 / expected)
    assert stat > chi2_critical(30)


def test_multipliers_are_inverse_keep_probabilities():
    s = make_schedule("minlen", 6, min_length=3)
    cuts = np.array([True, False, False, False, True, False, False, False, False])
    xi = s.multipliers(cuts)
    p = 1 - 1 / 4
    np.testing.assert_allclose(xi, [0, 1, 1, 1 / p, 0, 1, 1, 1 / p, 1 / p])
    assert s.pattern_probability(cuts) == pytest.approx(p * (1 - p) * p * p)


def test_sampling_is_reproducible():
    s = make_schedule("power", 8)
    a = s.sample_cuts(100, np.random.default_rng(1), size=3)
    b = s.sample_cuts(100, np.random.default_rng(1), size=3)
    assert np.array_equal(a, b) and a[:, 0].all()


@pytest.mark.parametrize(
    "name,mean,extra,match",
    [
        ("constant", 1, {}, "must be > 1"),
        ("constant", 0.5, {}, "must be > 1"),
        ("artbp", -3, {}, "must be > 1"),
        ("minlen", 8, {"min_length": 8}, "min_length < mean"),
        ("minlen", 8, {"min_length": 0}, "min_length"),
        ("power", 8, {"alpha": 1.0}, "alpha must be > 1"),
        ("power", 8, {"beta": 2}, "no parameter 'beta'; valid parameters: alpha"),
        ("artbp", 8, {"alpha": 2}, "no parameter 'alpha'; valid parameters: none"),
        ("geometric", 8, {}, "valid schedules: constant, minlen, power, artbp"),
    ],
)
def test_invalid_schedules_raise(name, mean, extra, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(name, mean, **extra)


def test_every_schedule_is_listed():
    assert list(SCHEDULES) == ["constant", "minlen", "power", "artbp"]


def test_per_sequence_patterns_are_independent_draws_of_the_same_stream():
    sch = make_schedule("power", 4, alpha=1.5)
    per_seq = sch.sample_cuts(20, np.random.default_rng(3), size=(5, 7))
    flat = sch.sample_cuts(20, np.random.default_rng(3), size=35)
    assert per_seq.shape == (5, 7, 20) and per_seq[..., 0].all()
    np.testing.assert_array_equal(per_seq, flat.reshape(5, 7, 20))
    assert sch.multipliers(per_seq).shape == (5, 7, 20)
