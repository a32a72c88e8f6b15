"""The verdict's statistics: size under the null, power, TOST, multiplicity (bptt.study.stats)."""

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from bptt.study import stats as S

N_SEEDS = 10
ALPHA = 0.05


def _mc_bound(rate, sims, z=3.0):
    """rate + z Monte Carlo standard errors of a Bernoulli rate estimated from ``sims``."""
    return rate + z * np.sqrt(rate * (1 - rate) / sims)


def _null(kind, shape, rng):
    if kind == "normal":
        return rng.standard_normal(shape)
    return rng.standard_t(3, shape)


@pytest.mark.parametrize("test, sims", [("t", 20000), ("permutation", 2000)])
@pytest.mark.parametrize("kind", ["normal", "t3"])
def test_null_rate_of_better_or_worse_is_at_most_alpha(kind, test, sims):
    """One comparison, no effect, 10 seeds: "better"/"worse" in at most 5% (+ 3 MC s.e.)."""
    d = _null(kind, (sims, N_SEEDS), np.random.default_rng(1))
    margin = 0.5 * np.std(d)  # equivalence is possible but must not hide the rate
    p = S.difference_pvalue(d, test)
    cls = S.classify(d.mean(axis=1), p, S.tost_pvalue(d, margin, test), ALPHA)
    rate, raw = np.isin(cls, ["better", "worse"]).mean(), np.mean(p < ALPHA)
    print(f"\n{kind} differences, {test} test, n={N_SEEDS}: false 'better'/'worse' rate "
          f"{rate:.4f} (raw p<0.05: {raw:.4f}) ± {np.sqrt(ALPHA * (1 - ALPHA) / sims):.4f} MC s.e.")
    assert rate <= _mc_bound(ALPHA, sims)
    if kind == "normal" and test == "t":
        assert raw >= ALPHA - 3 * np.sqrt(ALPHA * (1 - ALPHA) / sims)  # exact, not conservative


@pytest.mark.parametrize("correction", ["holm", "bh"])
@pytest.mark.parametrize("kind", ["normal", "t3"])
def test_null_family_error_rate_is_at_most_alpha(kind, correction):
    """Families of 20 null comparisons: P(any "better"/"worse") ≤ 5% (+ 3 MC s.e.)."""
    families, m = 2000, 20
    rng = np.random.default_rng(2)
    d = _null(kind, (families, m, N_SEEDS), rng)
    p = S.difference_pvalue(d.reshape(-1, N_SEEDS)).reshape(families, m)
    p_tost = S.tost_pvalue(d.reshape(-1, N_SEEDS), 0.3).reshape(families, m)
    cls = S.classify(d.mean(axis=-1), S.adjust(p, correction), S.adjust(p_tost, correction), ALPHA)
    any_false = np.isin(cls, ["better", "worse"]).any(axis=1)
    rate = any_false.mean()
    print(f"\n{kind}, {correction}, 20 null comparisons: family-wise false rate {rate:.4f}")
    assert rate <= _mc_bound(ALPHA, families)


def test_power_at_one_margin_matches_the_noncentral_t():
    """At a true effect of one margin (= one s.d.), n = 10: simulated power = theory."""
    sims, margin = 20000, 1.0
    d = np.random.default_rng(3).normal(margin, 1.0, (sims, N_SEEDS))
    out = S.compare(d, margin, ALPHA, correction="holm")  # one family: only the mean matters here
    p = S.difference_pvalue(d)
    power = np.mean((p < ALPHA) & (d.mean(axis=1) > 0))
    theory = S.t_power(margin, 1.0, N_SEEDS, ALPHA)
    se = np.sqrt(theory * (1 - theory) / sims)
    print(f"\npower at an effect of one margin (δ = σ, n = {N_SEEDS}): simulated {power:.4f}, "
          f"noncentral t {theory:.4f} ± {se:.4f}")
    assert abs(power - theory) <= 3 * se
    assert 0.75 < theory < 0.85
    # at the minimum detectable effect the power is 0.8 by construction
    mde = S.minimum_detectable_effect(1.0, N_SEEDS, ALPHA)[0]
    assert S.t_power(mde, 1.0, N_SEEDS, ALPHA) == pytest.approx(0.8, abs=1e-9)
    assert out["mde"] == pytest.approx(S.minimum_detectable_effect(out["sd"], N_SEEDS))
    # a true effect of exactly one margin is never "equivalent" beyond the TOST's size
    assert np.mean(out["outcome"] == "equivalent") <= _mc_bound(ALPHA, sims)


def test_tost_t_matches_hand_computation():
    d = np.array([0.3, -0.1, 0.2, 0.05, 0.15, 0.0, 0.25, -0.05])
    delta = 0.4
    n, m, s = len(d), d.mean(), d.std(ddof=1)
    se = s / np.sqrt(n)
    p_lower = sps.t.sf((m + delta) / se, n - 1)  # H0: mean <= -δ
    p_upper = sps.t.cdf((m - delta) / se, n - 1)  # H0: mean >= +δ
    assert S.tost_pvalue(d, delta)[0] == pytest.approx(max(p_lower, p_upper), rel=1e-12)
    # duality: equivalent at α exactly when the (1 - 2α) t interval lies inside ±δ
    for delta in (0.15, 0.2, 0.25, 0.3, 0.4):
        _, lo, hi = S.mean_interval(d, 1 - 2 * ALPHA)
        assert (S.tost_pvalue(d, delta)[0] < ALPHA) == bool(lo[0] > -delta and hi[0] < delta)


def test_tost_permutation_matches_enumeration_of_sign_flips():
    d = np.array([0.3, -0.1, 0.2, 0.05, 0.15, 0.25])
    delta = 0.5
    flips = np.array(list(itertools.product([1.0, -1.0], repeat=len(d))))

    def one_sided(x, greater):
        null = (flips * x).mean(axis=1)
        obs = x.mean()
        return np.mean(null >= obs - 1e-12) if greater else np.mean(null <= obs + 1e-12)

    hand = max(one_sided(d + delta, True), one_sided(d - delta, False))
    assert S.tost_pvalue(d, delta, test="permutation")[0] == pytest.approx(hand)
    hand_two = min(1.0, 2 * min(one_sided(d, True), one_sided(d, False)))
    assert S.difference_pvalue(d, test="permutation")[0] == pytest.approx(hand_two)


def test_difference_t_is_the_paired_t_test():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=10), rng.normal(0.5, 1, size=10)
    assert S.difference_pvalue(b - a)[0] == pytest.approx(sps.ttest_rel(b, a).pvalue, rel=1e-12)


def test_holm_and_bh_on_a_known_family():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1 = .02, .03, .06, .04 -> running max
    np.testing.assert_allclose(S.adjust(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted p·m/rank = .02, .02, .04, .04 -> running min from the top
    np.testing.assert_allclose(S.adjust(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    # untested comparisons (NaN) are not in the family
    with_nan = np.array([0.01, np.nan, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(S.adjust(with_nan, "holm"), [0.03, np.nan, 0.06, 0.06, 0.02])
    # one family per row: the same numbers
    np.testing.assert_allclose(S.adjust(np.stack([p, p[::-1]]), "holm")[1], [0.02, 0.06, 0.06, 0.03])
    np.testing.assert_allclose(S.adjust(np.stack([p, p]), "bh")[0], [0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="valid: holm, bh"):
        S.adjust(p, "bonferroni")


def test_classes_and_untestable_comparisons():
    rng = np.random.default_rng(5)
    n = N_SEEDS
    d = np.stack([
        1.0 + 0.1 * rng.standard_normal(n),   # clearly better
        -1.0 + 0.1 * rng.standard_normal(n),  # clearly worse
        0.01 * rng.standard_normal(n),        # tight around 0: equivalent within 0.5
        np.tile([3.0, -2.5], n // 2),         # noisy, mean 0.25: inconclusive
        np.zeros(n),                          # identical in every seed: no test
    ])
    out = S.compare(d, 0.5)
    assert list(out["outcome"]) == ["better", "worse", "equivalent", "inconclusive", "inconclusive"]
    assert np.isnan(out["p"][4]) and np.isnan(out["p_tost"][4])
    # the family has 4 members, not 5
    np.testing.assert_allclose(S.adjust(out["p"][:4], "holm"), out["p_adj"][:4])


def test_two_seeds_work_and_one_seed_has_no_test():
    d = np.array([[0.1, 0.3]])
    out = S.compare(d, 0.05)
    assert np.isfinite(out["p"][0]) and out["outcome"][0] == "inconclusive"
    assert out["mde"][0] > 1.0  # two seeds detect only effects far larger than the spread
    one = S.compare([np.array([0.1]), np.array([0.1, 0.3, 0.2])], 0.05)  # one seed: no test
    assert np.isnan(one["p"][0]) and np.isnan(one["lo"][0]) and np.isnan(one["mde"][0])
    assert one["outcome"][0] == "inconclusive" and np.isfinite(one["p"][1])
    with pytest.raises(ValueError, match="margins must be > 0"):
        S.tost_pvalue(d, 0.0)


def test_sign_flips_beyond_16_seeds_are_drawn_reproducibly_with_bounded_memory():
    """20 seeds: 2^16 drawn patterns (all 2^20 for 46 comparisons at once needed > 24 GB),
    from a fixed stream: the same p-values every time, close to the exact test's."""
    import itertools
    import resource

    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, size=(46, 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    p1 = S.difference_pvalue(d, "permutation")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, grown_mb
    assert np.array_equal(p1, S.difference_pvalue(d, "permutation"))
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=20)), dtype=np.float32)
    means = signs @ d[0].astype(np.float32) / 20
    exact = np.mean(np.abs(means) >= abs(d[0].mean()) - 1e-7)
    assert abs(p1[0] - exact) < 0.01
