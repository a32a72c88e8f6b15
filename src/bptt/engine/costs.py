"""Realised costs of a backward plan: what one update actually cut, stored and computed.

regular(τ) and randomized(τ̄ = τ) are matched in *expectation* (same mean segment
length).  These pure functions measure each drawn plan, so that a run can record
what it really paid and the report can show the match instead of assuming it.

For a plan ``(m, inject, reduce)`` of ``Estimator.plan`` (m (K, T) shared by the
batch, or (K, B, T) per sequence) and a batch of B sequences:

``cuts``
    cut edges per sequence (``m[.., t] == 0`` for t >= 1), mean over sequences and
    samples.  Only defined for plans that are pure edge multipliers (``inject`` None);
    ``windowed`` cuts every loss separately and gets NaN.
``peak_stored_steps``
    memory of an implementation that backpropagates each segment as soon as it ends:
    at step t sequence b keeps the states since its last cut (its current segment),
    so the store is ``Σ_b age_b(t)``; the peak is the maximum over t.  With one pattern
    shared by the batch it is B × the longest segment; ``full`` is B·T and
    ``windowed(τ)`` B·min(τ, T).  Rows that are summed (``reduce``: windowed's slots)
    share the forward states, so a sequence keeps the union of its rows' segments.
``longest_segment``
    the longest backward segment of any sequence (steps).
``backward_steps``
    state-to-state vector–Jacobian products that carry gradient, summed over the
    batch: edge t of a row counts when it is kept and some loss injected at or after t
    reaches it before a cut.  T−1−cuts per sequence for edge-multiplier plans;
    Σ_t min(t, τ−1) for ``windowed(τ)``.

Samples (K > 1, gradient statistics) are averaged; training uses K = 1.
"""

from __future__ import annotations

import numpy as np

COST_KEYS = ("cuts", "peak_stored_steps", "longest_segment", "backward_steps")


def _ages(cut):
    """Steps kept at each t since the last cut (t itself included), shape of ``cut``.

    ``cut[..., t]`` True where the edge into step t is cut; step 0 always starts.
    """
    T = cut.shape[-1]
    idx = np.arange(T)
    starts = np.where(cut, idx, 0)
    starts[..., 0] = 0
    return idx - np.maximum.accumulate(starts, axis=-1) + 1


def _reaching(cut, inject):
    """Edges t >= 1 that are kept and carry the gradient of some loss at or after t."""
    T = cut.shape[-1]
    idx = np.arange(T)
    big = T + 1
    # next injection at or after t, and next cut strictly after t
    inj_at = np.where(inject, idx, big)
    next_inject = np.minimum.accumulate(inj_at[..., ::-1], axis=-1)[..., ::-1]
    cut_at = np.where(cut, idx, big)
    after = np.concatenate([cut_at[..., 1:], np.full(cut.shape[:-1] + (1,), big)], axis=-1)
    next_cut_after = np.minimum.accumulate(after[..., ::-1], axis=-1)[..., ::-1]
    carried = (~cut) & (next_inject < next_cut_after)
    carried[..., 0] = False
    return carried


def plan_costs(plan, B):
    """Realised costs of one plan on a batch of B sequences: ``{key: float}`` (COST_KEYS)."""
    m, inject, reduce = plan
    m = np.asarray(m)
    if m.ndim == 2:
        m = m[:, None, :]  # one pattern for every sequence
    K, Bm, T = m.shape
    if Bm not in (1, B):
        raise ValueError(f"plan has {Bm} sequence rows, batch has B={B}")
    cut = m == 0
    cut[..., 0] = True
    inj = np.ones((K, 1, T), bool) if inject is None else np.asarray(inject, dtype=bool)[:, None, :]
    ages = _ages(cut)  # (K, Bm, T)
    carried = _reaching(cut, inj)  # (K, Bm, T)
    scale = B // Bm  # a shared row stands for all B sequences
    if reduce:  # summed rows share one forward store: union of their segments, sum of work
        stored = ages.max(axis=0).sum(axis=0) * scale  # (T,)
        peak = float(stored.max())
        longest = float(ages.max())
        steps = float(carried.sum()) * scale
        cuts = float("nan")
    else:
        peak = float((ages.sum(axis=1) * scale).max(axis=-1).mean())
        longest = float(ages.max(axis=(1, 2)).mean())
        steps = float(carried.sum(axis=(1, 2)).mean()) * scale
        cuts = float(cut[..., 1:].sum(axis=-1).mean()) if inject is None else float("nan")
    return {"cuts": cuts, "peak_stored_steps": peak, "longest_segment": longest,
            "backward_steps": steps}


class CostTally:
    """Running record of a run's realised costs, one ``add`` per update.

    ``summary()`` gives per-update means of every cost, and the maxima of the peak store
    and of the longest segment over the run (prefixed ``mean_`` / ``max_``).
    """

    def __init__(self):
        self.n = 0
        self.sums = dict.fromkeys(COST_KEYS, 0.0)
        self.maxima = dict.fromkeys(("peak_stored_steps", "longest_segment"), 0.0)

    def add(self, costs):
        self.n += 1
        for k in COST_KEYS:
            self.sums[k] += costs[k]
        for k in self.maxima:
            self.maxima[k] = max(self.maxima[k], costs[k])

    def summary(self):
        nan = float("nan")
        out = {f"mean_{k}": (self.sums[k] / self.n if self.n else nan) for k in COST_KEYS}
        out.update({f"max_{k}": (v if self.n else nan) for k, v in self.maxima.items()})
        out["cost_updates"] = self.n
        return out
