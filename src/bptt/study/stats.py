"""Paired comparisons over seeds: difference test, equivalence test, multiplicity, class.

A comparison is ``n`` paired differences ``d_i`` (one per seed, oriented so that a
positive value favours randomized truncation) and a practical-equivalence margin
``δ > 0`` on the same scale.  Four p-values per comparison, all from ``scipy.stats``:

* **difference**: two-sided test of ``E d = 0`` — the one-sample t-test of the paired
  differences (``ttest_1samp``, i.e. the paired t-test), or the exact sign-flip
  permutation test (``permutation_test`` with ``permutation_type='samples'``, all
  ``2^n`` sign patterns up to n = 16);
* **equivalence** (TOST): the larger of the two one-sided p-values of
  ``H0: E d <= -δ`` and ``H0: E d >= +δ``, with the same test.

Across the comparison family each of the two sets of p-values is adjusted with Holm
(family-wise error ≤ α) or Benjamini–Hochberg (false discovery rate ≤ α).  A
comparison is then one of

* ``equivalent`` — the adjusted TOST p is below α: the effect lies within ±δ
  (this includes effects that are significantly non-zero but smaller than δ, flagged
  in the ``significant`` column);
* ``better`` / ``worse`` — otherwise, if the adjusted difference p is below α, by the
  sign of the mean difference;
* ``inconclusive`` — neither.

Comparisons whose differences do not vary over seeds (for instance both strategies
failed to learn in every seed and got the same worst-case score) have no test; their
p-values are NaN, they are left out of the multiplicity family and are inconclusive.

The permutation test is exact (all ``2^n`` sign patterns) up to n = 16 seeds; beyond,
it draws ``2^16`` patterns from a fixed random stream, so it stays reproducible.  It is
coarse: its smallest two-sided p-value is ``2 / 2^n`` (0.002 at n = 10; about 3e-5 with
the drawn patterns), which Holm over a large family may never reach; the t-test is the
default.  ``minimum_detectable_effect`` gives, for a comparison's
observed spread, the smallest true effect the difference test finds with a given power.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, optimize, stats

TESTS = ("t", "permutation")
CORRECTIONS = ("holm", "bh")
CLASSES = ("better", "equivalent", "worse", "inconclusive")


def _check(name, value, valid):
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _mean(x, axis):
    return np.mean(x, axis=axis)


def _pvalue(d, alternative, test):
    """p-value of ``E d = 0`` against ``alternative``, along the last axis."""
    if test == "t":
        with np.errstate(divide="ignore", invalid="ignore"):
            return stats.ttest_1samp(d, 0.0, axis=-1, alternative=alternative).pvalue
    d = np.atleast_2d(d)
    return np.array([_sign_flip_pvalue(row, alternative) for row in d]).reshape(d.shape[:-1])


# Sign patterns enumerated exactly up to 2^16 (n <= 16 seeds); beyond, as many random
# patterns from a fixed stream (2^20 patterns of 20 seeds for 46 comparisons at once
# took more than 24 GB).  Batches bound the memory either way.
EXACT_SIGN_FLIPS = 2 ** 16
SIGN_FLIP_BATCH = 4096


def _sign_flip_pvalue(d, alternative):
    """Sign-flip permutation p-value of ``E d = 0`` for one comparison's differences."""
    exact = 2 ** len(d) <= EXACT_SIGN_FLIPS
    return stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                  n_resamples=np.inf if exact else EXACT_SIGN_FLIPS,
                                  batch=SIGN_FLIP_BATCH, alternative=alternative,
                                  rng=None if exact else np.random.default_rng(0)).pvalue


def testable(d):
    """Whether each row of ``d`` (m, n) varies over seeds (n >= 2, finite, not constant
    to 1e-12 relative)."""
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    ok = np.all(np.isfinite(d), axis=-1) & (d.shape[-1] >= 2)
    finite = np.where(np.isfinite(d), d, 0.0)
    # constant up to rounding (e.g. a fixed ratio whose logs differ in the last bit)
    return ok & (np.ptp(finite, axis=-1) > 1e-12 * np.max(np.abs(finite), axis=-1))


def difference_pvalue(d, test="t"):
    """Two-sided p of ``E d = 0`` per row of ``d`` (m, n); NaN where not ``testable``."""
    _check("test", test, TESTS)
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    p = np.full(d.shape[0], np.nan)
    ok = testable(d)
    if ok.any():
        p[ok] = _pvalue(d[ok], "two-sided", test)
    return p


def tost_pvalue(d, margin, test="t"):
    """Two one-sided tests of equivalence within ±margin per row of ``d`` (m, n).

    ``margin`` is a scalar or (m,) array of positive numbers on the scale of ``d``.
    Returns max(p of H0: E d <= -δ, p of H0: E d >= +δ); NaN where not ``testable``.
    """
    _check("test", test, TESTS)
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), d.shape[:1])
    if not np.all(margin > 0):
        raise ValueError(f"equivalence margins must be > 0, got {margin[~(margin > 0)]}")
    p = np.full(d.shape[0], np.nan)
    ok = testable(d)
    if ok.any():
        m = margin[ok][:, None]
        above_lower = _pvalue(d[ok] + m, "greater", test)
        below_upper = _pvalue(d[ok] - m, "less", test)
        p[ok] = np.maximum(above_lower, below_upper)
    return p


def holm(p):
    """Holm's step-down adjusted p-values (family-wise error); NaNs are not in the family."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    steps = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out


def adjust(p, correction="holm"):
    """Adjusted p-values over the family ``p``.

    1-D ``p``: one family; NaNs (untested comparisons) are left out of it and kept.
    2-D ``p`` without NaNs: one family per row (for simulations).
    """
    _check("correction", correction, CORRECTIONS)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2:
        if not np.all(np.isfinite(p)):
            raise ValueError("adjust: a 2-D family of p-values must not contain NaN")
        if correction == "bh":
            return stats.false_discovery_control(p, axis=-1, method="bh")
        m = p.shape[-1]
        order = np.argsort(p, axis=-1, kind="stable")
        steps = np.take_along_axis(p, order, -1) * (m - np.arange(m))
        out = np.empty_like(p)
        np.put_along_axis(out, order, np.minimum(1.0, np.maximum.accumulate(steps, axis=-1)), -1)
        return out
    if correction == "holm":
        return holm(p)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def classify(mean, p_difference_adj, p_tost_adj, alpha=0.05):
    """One of CLASSES per comparison (see the module docstring for the rule)."""
    mean = np.asarray(mean, dtype=np.float64)
    diff = np.nan_to_num(np.asarray(p_difference_adj, dtype=np.float64), nan=1.0) < alpha
    equiv = np.nan_to_num(np.asarray(p_tost_adj, dtype=np.float64), nan=1.0) < alpha
    return np.where(equiv, "equivalent",
                    np.where(diff & (mean > 0), "better",
                             np.where(diff & (mean < 0), "worse", "inconclusive")))


def mean_interval(d, level=0.95):
    """(mean, lo, hi) per row of ``d`` (m, n): the t interval of the mean difference."""
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    mean = d.mean(axis=-1)
    lo = np.full(len(d), np.nan)
    hi = np.full(len(d), np.nan)
    ok = testable(d)
    if ok.any():
        ci = stats.ttest_1samp(d[ok], 0.0, axis=-1).confidence_interval(level)
        lo[ok], hi[ok] = ci.low, ci.high
    const = ~ok & np.all(np.isfinite(d), axis=-1) & (d.shape[-1] >= 2)
    lo[const], hi[const] = mean[const], mean[const]  # no spread: the interval is the point
    return mean, lo, hi


def t_power(effect, sd, n, alpha=0.05):
    """Power of the two-sided one-sample t-test at a true mean ``effect``, spread ``sd``.

    The noncentral-t probability P(|T'| > t_crit) from ``stats.nct``; where that returns
    NaN (small degrees of freedom, large noncentrality) the same probability as an
    integral over the chi-square variable of the sample variance.
    """
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = np.asarray(np.asarray(effect, dtype=np.float64) * np.sqrt(n) / sd, dtype=np.float64)
    with np.errstate(all="ignore"):
        power = np.asarray(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    bad = ~np.isfinite(power) & np.isfinite(nc)
    if bad.any():
        dist = stats.chi2(df)

        def one(x):
            def f(v):
                s = crit * np.sqrt(v / df)
                return (stats.norm.cdf(x - s) + stats.norm.cdf(-x - s)) * dist.pdf(v)
            return integrate.quad(f, 0.0, np.inf, limit=200)[0]

        power = power.copy()
        power[bad] = np.vectorize(one, otypes=[np.float64])(nc[bad])
    return power[()] if power.ndim == 0 else power


def minimum_detectable_effect(sd, n, alpha=0.05, power=0.8):
    """Smallest true mean the two-sided t-test detects with ``power``, for spread ``sd``.

    Proportional to ``sd`` (the power depends on effect / sd only).  Computed before
    any multiplicity correction, so a lower bound under Holm/BH; NaN where ``sd`` is
    not positive or ``n < 2``.
    """
    sd = np.atleast_1d(np.asarray(sd, dtype=np.float64))
    if n < 2:
        return np.full(sd.shape, np.nan)
    hi = 1.0
    while t_power(hi, 1.0, n, alpha) < power:
        hi *= 2.0
    unit = optimize.brentq(lambda e: t_power(e, 1.0, n, alpha) - power, 0.0, hi, xtol=1e-12)
    return np.where(np.isfinite(sd) & (sd > 0), unit * sd, np.nan)


def compare(d, margin, alpha=0.05, test="t", correction="holm"):
    """Everything the verdict needs for a family of paired comparisons.

    d: (m, n) paired differences, positive favouring randomized, or a list of m 1-D
    arrays of different lengths (the family is still one family); margin: scalar or (m,).
    A comparison with one seed, or without variation over seeds, has no test (NaN
    p-values, outside the family, inconclusive).
    Returns a dict of (m,) arrays: mean, lo, hi (t interval at 1 - alpha), p, p_adj,
    p_tost, p_tost_adj, significant (p_adj < alpha), outcome (one of CLASSES), sd,
    mde (difference test, power 0.8, unadjusted alpha) and power_at_margin (power of
    the unadjusted difference test at a true effect of one margin, for the observed sd).
    """
    rows = list(np.atleast_2d(np.asarray(d, dtype=np.float64))) if not isinstance(d, list) \
        else [np.asarray(x, dtype=np.float64).ravel() for x in d]
    m = len(rows)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), (m,))
    lengths = np.array([len(x) for x in rows])
    if m == 0:
        raise ValueError("no comparisons")
    if lengths.min() < 1:
        raise ValueError("a comparison without any paired seed")
    keys = ("mean", "lo", "hi", "p", "p_tost", "sd", "mde", "power_at_margin")
    out = {k: np.full(m, np.nan) for k in keys}
    for n in np.unique(lengths):
        idx = np.flatnonzero(lengths == n)
        dn = np.stack([rows[i] for i in idx])
        out["mean"][idx], out["lo"][idx], out["hi"][idx] = mean_interval(dn, 1 - alpha)
        out["p"][idx] = difference_pvalue(dn, test)
        out["p_tost"][idx] = tost_pvalue(dn, margin[idx], test)
        sd = dn.std(axis=-1, ddof=1) if n >= 2 else np.full(len(idx), np.nan)
        out["sd"][idx] = sd
        out["mde"][idx] = minimum_detectable_effect(sd, n, alpha)
        ok = np.isfinite(sd) & (sd > 0)
        if ok.any():
            out["power_at_margin"][idx[ok]] = t_power(margin[idx][ok], sd[ok], n, alpha)
    out["p_adj"] = adjust(out["p"], correction)
    out["p_tost_adj"] = adjust(out["p_tost"], correction)
    out["significant"] = np.nan_to_num(out["p_adj"], nan=1.0) < alpha
    out["outcome"] = classify(out["mean"], out["p_adj"], out["p_tost_adj"], alpha)
    return out
