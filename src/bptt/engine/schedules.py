"""Truncation schedules π for randomized BPTT (Tallec & Ollivier 2017).

A schedule gives, for the number ``k >= 1`` of steps in the current segment (steps
since the last cut), the probability ``keep_prob(k) = π_k`` of keeping the edge into
the next step.  A sequence of length T has T-1 such edges; the first step always
starts a segment (``h_0`` is a constant).  Segment lengths then have survival
function ``S(n) = P(len >= n) = Π_{j<n} π_j`` and mean ``Σ_{n>=1} S(n)``.

The randomized estimator multiplies a kept edge by ``1/π_k`` and a cut edge by 0.
Because π_k depends only on the past cut pattern, ``E[ξ_t | past] = 1`` and every
product of multipliers along a backward path has expectation 1: the gradient
estimate is unbiased.  A path that survives n steps in one segment carries weight
``1/S(n)``, which is what distinguishes the schedules:

=============  ======================================  ==========================
name           π_k                                      weight 1/S(n) grows like
=============  ======================================  ==========================
``constant``   ``1 - 1/τ̄``                              exponentially, (1-1/τ̄)^-n
``minlen``     1 for k < τ0, then ``1 - 1/(τ̄-τ0+1)``   exponentially after τ0
``power``      ``((k-1+c)/(k+c))^α``, c from τ̄          polynomially, n^α
``artbp``      ``(k+τ̄-2)/(k+τ̄)``                        polynomially, n^2
=============  ======================================  ==========================

Every schedule is parameterized by its exact mean segment length ``τ̄`` (``mean``),
so that it is compared with ``regular(τ)`` at ``τ̄ = τ``: same expected number of
cuts and memory on an unbounded sequence (a window of T steps realises other costs;
``costs.plan_costs`` measures them).

Cut patterns are boolean arrays ``cuts`` of shape (..., T): ``cuts[..., 0]`` is always
True (sequence start) and ``cuts[..., t]`` says whether the edge ``h_{t-1} -> h_t``
(0-based step t) is cut.
"""

from __future__ import annotations

import inspect
import math

import numpy as np


class Schedule:
    """Base class: subclasses define ``keep_prob`` and, where closed-form, ``survival``."""

    name = "base"

    def __init__(self, mean):
        mean = float(mean)
        if not np.isfinite(mean) or mean <= 1.0:
            raise ValueError(
                f"{self.name}: mean segment length must be > 1 (a mean of 1 cuts every "
                f"edge and leaves no unbiased estimator), got {mean}"
            )
        self.mean = mean

    # -- the hazard -------------------------------------------------------------
    def keep_prob(self, k):
        """π_k for integer ``k >= 1`` (array or scalar)."""
        raise NotImplementedError

    def _check_probs(self):
        p = self.keep_prob(np.arange(1, 1001))
        if not (np.all(p > 0) and np.all(p <= 1)):
            raise ValueError(f"{self!r}: keep probabilities must lie in (0, 1]")

    # -- exact distribution -----------------------------------------------------
    def survival(self, n):
        """``S(n) = P(len >= n)`` for integer n >= 1."""
        n = np.asarray(n)
        out = np.empty(n.shape, dtype=np.float64)
        flat = n.ravel()
        top = int(flat.max()) if flat.size else 1
        cum = np.concatenate([[1.0], np.cumprod(self.keep_prob(np.arange(1, top)))])
        out.ravel()[:] = cum[flat - 1]
        return out

    def length_pmf(self, n_max):
        """P(len = n) for n = 1..n_max, shape (n_max,)."""
        S = self.survival(np.arange(1, n_max + 2))
        return S[:-1] - S[1:]

    def exact_mean(self):
        """``Σ_n S(n)`` computed from the hazard (numerically, to high precision)."""
        return float(self.survival(np.arange(1, 200_001)).sum())

    # -- sampling ---------------------------------------------------------------
    def sample_cuts(self, T, rng, size=None):
        """Draw independent cut patterns, shape ``(T,)``, ``(size, T)`` or ``(*size, T)``.

        ``size=(K, B)`` gives every sequence b of a batch its own pattern per sample k.
        All uniforms are drawn up front, so the result depends only on the rng state.
        """
        shape = () if size is None else tuple(int(n) for n in np.atleast_1d(size))
        return self.cuts_from_uniforms(rng.random(shape + (T,)))

    def cuts_from_uniforms(self, u):
        """Cut patterns (..., T) from uniforms u (..., T): the edge into step t is kept when
        ``u[..., t] < π_k``, k the age of the current segment.  Vectorized over the leading
        axes, so that the patterns of many runs are drawn in one loop over t."""
        T = u.shape[-1]
        keep_prob = self.keep_prob(np.arange(1, T + 1))  # π_k for every age k <= T
        cuts = np.zeros(u.shape, dtype=bool)
        cuts[..., 0] = True
        age = np.ones(u.shape[:-1], dtype=np.int64)
        for t in range(1, T):
            keep = u[..., t] < keep_prob[age - 1]
            cuts[..., t] = ~keep
            age = np.where(keep, age + 1, 1)
        return cuts

    def segment_ages(self, cuts):
        """For every edge t, the length k of the segment it would extend, shape of cuts."""
        cuts = np.asarray(cuts, dtype=bool)
        T = cuts.shape[-1]
        idx = np.arange(T)
        last_cut = np.maximum.accumulate(np.where(cuts, idx, 0), axis=-1)
        age = np.empty(cuts.shape, dtype=np.int64)
        age[..., 0] = 1
        age[..., 1:] = idx[1:] - last_cut[..., :-1]
        return age

    def multipliers(self, cuts):
        """Edge multipliers ξ: 0 on a cut edge, ``1/π_k`` on a kept one. Same shape as cuts."""
        cuts = np.asarray(cuts, dtype=bool)
        xi = np.where(cuts, 0.0, 1.0 / self.keep_prob(self.segment_ages(cuts)))
        xi[..., 0] = 0.0
        return xi

    def pattern_probability(self, cuts):
        """Probability of a cut pattern under the schedule (for exact enumeration)."""
        cuts = np.asarray(cuts, dtype=bool)
        p = self.keep_prob(self.segment_ages(cuts))[..., 1:]
        return np.prod(np.where(cuts[..., 1:], 1.0 - p, p), axis=-1)

    def segment_lengths(self, cuts):
        """Lengths of the complete segments of one pattern (the last one is censored)."""
        starts = np.flatnonzero(np.asarray(cuts, dtype=bool))
        return np.diff(np.append(starts, len(cuts)))

    def __repr__(self):
        extra = "".join(f", {k}={v:g}" for k, v in self.params().items())
        return f"{self.name}(mean={self.mean:g}{extra})"

    def params(self):
        return {}


class Constant(Schedule):
    """``π_k = 1 - 1/τ̄``: geometric segment lengths."""

    name = "constant"

    def __init__(self, mean):
        super().__init__(mean)
        self.p = 1.0 - 1.0 / self.mean
        self._check_probs()

    def keep_prob(self, k):
        return np.full(np.shape(k), self.p)

    def survival(self, n):
        return self.p ** (np.asarray(n, dtype=np.float64) - 1.0)

    def exact_mean(self):
        return 1.0 / (1.0 - self.p)


class MinLength(Schedule):
    """Never cut in the first ``τ0 = min_length`` steps, then a constant hazard.

    Segment length is ``τ0 - 1 + Geometric(1 - π)`` with ``π = 1 - 1/(τ̄ - τ0 + 1)`` so
    that the mean is τ̄.  ``min_length`` defaults to ``floor(τ̄ / 2)`` (at least 1).
    Needs ``1 <= τ0 < τ̄``.
    """

    name = "minlen"

    def __init__(self, mean, min_length=None):
        super().__init__(mean)
        if min_length is None:
            min_length = max(1, int(math.floor(self.mean / 2)))
        if int(min_length) != min_length or not 1 <= min_length < self.mean:
            raise ValueError(
                f"minlen: min_length must be an integer with 1 <= min_length < mean "
                f"({self.mean:g}), got {min_length}"
            )
        self.min_length = int(min_length)
        self.p = 1.0 - 1.0 / (self.mean - self.min_length + 1.0)
        self._check_probs()

    def params(self):
        return {"min_length": self.min_length}

    def keep_prob(self, k):
        k = np.asarray(k)
        return np.where(k < self.min_length, 1.0, self.p)

    def survival(self, n):
        n = np.asarray(n, dtype=np.float64)
        return self.p ** np.maximum(n - self.min_length, 0.0)

    def exact_mean(self):
        return self.min_length - 1 + 1.0 / (1.0 - self.p)


def _power_mean(c, alpha, terms=4000):
    """``Σ_{j>=0} (c/(j+c))^α`` with an Euler–Maclaurin tail (a scaled Hurwitz zeta)."""
    j = np.arange(terms, dtype=np.float64)
    head = np.sum((c / (j + c)) ** alpha)
    x = terms + c
    f = (c / x) ** alpha
    tail = x * f / (alpha - 1.0) + 0.5 * f + alpha * f / (12.0 * x)
    return head + tail


class Power(Schedule):
    """Heavy-tailed lengths: ``S(n) = (c / (n - 1 + c))^α``, so ``P(len >= n) ~ n^-α``.

    Hazard of cutting ``c_k = 1 - ((k-1+c)/(k+c))^α ≈ α/(k+c)``; path weights
    ``1/S(n)`` grow like ``n^α``.  The scale c is solved (bisection) so that the mean
    ``c^α ζ(α, c)`` equals τ̄.  Needs ``α > 1`` for a finite mean; default α = 1.5
    (finite mean, infinite variance of the length).
    """

    name = "power"

    def __init__(self, mean, alpha=1.5):
        super().__init__(mean)
        alpha = float(alpha)
        if not alpha > 1.0:
            raise ValueError(f"power: alpha must be > 1 for a finite mean, got {alpha}")
        self.alpha = alpha
        lo, hi = 1e-12, max(1.0, self.mean * alpha)
        while _power_mean(hi, alpha) < self.mean:
            hi *= 2.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _power_mean(mid, alpha) < self.mean:
                lo = mid
            else:
                hi = mid
        self.c = 0.5 * (lo + hi)
        self._check_probs()

    def params(self):
        return {"alpha": self.alpha}

    def keep_prob(self, k):
        k = np.asarray(k, dtype=np.float64)
        return ((k - 1.0 + self.c) / (k + self.c)) ** self.alpha

    def survival(self, n):
        n = np.asarray(n, dtype=np.float64)
        return (self.c / (n - 1.0 + self.c)) ** self.alpha

    def exact_mean(self):
        return float(_power_mean(self.c, self.alpha))


class ARTBP(Schedule):
    """Cut hazard ``c_k = 2/(k + τ̄)``, i.e. ``π_k = (k + τ̄ - 2)/(k + τ̄)``.

    Why this formula: Tallec & Ollivier's ARTBP argument is that a truncation
    probability decaying like 1/k keeps the compensation weights polynomial instead of
    exponential.  With hazard ``2/(k+s+1)`` the survival telescopes,
    ``S(n) = s(s+1)/((n+s-1)(n+s))``, so the weights ``1/S(n)`` grow exactly
    quadratically, the mean is exactly ``s + 1`` (we set ``s = τ̄ - 1``), and the
    length has a finite mean but a (borderline) infinite variance.  The factor 2 is
    the smallest integer that gives a finite mean with a closed form; unlike
    ``power`` the shape is fixed, so τ̄ alone sets the schedule.
    """

    name = "artbp"

    def __init__(self, mean):
        super().__init__(mean)
        self._check_probs()

    def keep_prob(self, k):
        k = np.asarray(k, dtype=np.float64)
        return (k + self.mean - 2.0) / (k + self.mean)

    def survival(self, n):
        n = np.asarray(n, dtype=np.float64)
        s = self.mean - 1.0
        return s * (s + 1.0) / ((n + s - 1.0) * (n + s))

    def exact_mean(self):
        return self.mean


SCHEDULES = {s.name: s for s in (Constant, MinLength, Power, ARTBP)}


def make_schedule(name, mean, **params):
    """Build a schedule by name; unknown names or parameters raise ValueError."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}"
        ) from None
    valid = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "mean")]
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ValueError(
            f"schedule {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(valid) or 'none'}"
        )
    return cls(mean, **params)
