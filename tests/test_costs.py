"""Realised costs of a plan: closed forms for the deterministic plans, loops for the rest."""

import numpy as np
import pytest

from bptt import estimators as E
from bptt.engine.costs import CostTally, plan_costs


def reference_costs(m, inject, reduce, B):
    """Step-by-step reference: walk every row forward (store) and backward (work)."""
    m = np.asarray(m)
    if m.ndim == 2:
        m = np.repeat(m[:, None, :], B, axis=1)
    K, _, T = m.shape
    inj = np.ones((K, T), bool) if inject is None else np.asarray(inject, bool)
    ages = np.zeros((K, B, T))
    work = np.zeros((K, B))
    for k in range(K):
        for b in range(B):
            age = 0
            for t in range(T):
                age = 1 if (t == 0 or m[k, b, t] == 0) else age + 1
                ages[k, b, t] = age
            live = False  # walking back: is some injected loss still being carried?
            for t in range(T - 1, 0, -1):
                live = live or inj[k, t]
                if m[k, b, t] == 0:
                    live = False
                elif live:
                    work[k, b] += 1
    if reduce:
        return ages.max(axis=0).sum(axis=0).max(), ages.max(), work.sum()
    return ages.sum(axis=1).max(axis=1).mean(), ages.max(axis=(1, 2)).mean(), work.sum(axis=1).mean()


@pytest.mark.parametrize("T,tau", [(32, 4), (32, 8), (30, 7), (16, 16), (16, 40)])
def test_deterministic_plans_have_their_closed_form_costs(T, tau):
    B = 5
    full = plan_costs(E.Full().plan(T, 1, None), B)
    assert full == {"cuts": 0, "peak_stored_steps": B * T, "longest_segment": T, "backward_steps": B * (T - 1)}
    reg = plan_costs(E.Regular(tau).plan(T, 1, None), B)
    cuts = (T - 1) // tau
    assert reg == {"cuts": cuts, "peak_stored_steps": B * min(tau, T), "longest_segment": min(tau, T),
                   "backward_steps": B * (T - 1 - cuts)}
    win = plan_costs(E.Windowed(tau).plan(T, 1, None), B)
    assert np.isnan(win["cuts"])
    assert win["peak_stored_steps"] == B * min(tau, T) and win["longest_segment"] == min(tau, T)
    assert win["backward_steps"] == B * sum(min(t, tau - 1) for t in range(T))


@pytest.mark.parametrize("spec", ["randomized:constant:4", "randomized:power:6", "randomized:artbp:3",
                                  "windowed:5", "regular:6", "full"])
@pytest.mark.parametrize("per_sequence", [False, True])
def test_costs_equal_a_step_by_step_reference(spec, per_sequence):
    T, B, K = 40, 6, 3
    est = E.parse_estimator(spec)
    plan = est.plan(T, K, np.random.default_rng(1), B=B if per_sequence else None)
    got = plan_costs(plan, B)
    peak, longest, steps = reference_costs(*plan, B)
    assert got["peak_stored_steps"] == pytest.approx(peak)
    assert got["longest_segment"] == pytest.approx(longest)
    assert got["backward_steps"] == pytest.approx(steps)
    if est.kind == "randomized":
        m = plan[0] if plan[0].ndim == 3 else np.repeat(plan[0][:, None], B, axis=1)
        assert got["cuts"] == pytest.approx((m[..., 1:] == 0).sum(-1).mean())


def test_per_sequence_patterns_store_less_at_the_peak_than_one_shared_pattern():
    """Independent cuts do not all fall late together: the peak of the sum is smaller."""
    T, B = 64, 32
    est = E.parse_estimator("randomized:power:8")
    rng = np.random.default_rng(0)
    shared = [plan_costs(est.plan(T, 1, rng), B) for _ in range(200)]
    per_seq = [plan_costs(est.plan(T, 1, rng, B=B), B) for _ in range(200)]
    for key in ("cuts", "backward_steps"):  # the same in expectation ...
        a, b = np.mean([c[key] for c in shared]), np.mean([c[key] for c in per_seq])
        assert abs(a - b) < 0.1 * a
    # ... but the peak memory is not
    assert np.mean([c["peak_stored_steps"] for c in per_seq]) < 0.8 * np.mean(
        [c["peak_stored_steps"] for c in shared])


def test_identical_rows_cost_what_the_shared_pattern_costs():
    T, B = 30, 4
    m, _, _ = E.parse_estimator("randomized:minlen:5").plan(T, 2, np.random.default_rng(3))
    rows = np.repeat(m[:, None, :], B, axis=1)
    assert plan_costs((m, None, False), B) == plan_costs((rows, None, False), B)
    with pytest.raises(ValueError, match="3 sequence rows, batch has B=4"):
        plan_costs((rows[:, :3], None, False), B)


def test_tally_means_and_maxima():
    tally = CostTally()
    assert tally.summary()["cost_updates"] == 0 and np.isnan(tally.summary()["mean_cuts"])
    for peak, cuts in [(10, 1), (30, 3)]:
        tally.add({"cuts": cuts, "peak_stored_steps": peak, "longest_segment": peak / 2, "backward_steps": 5})
    s = tally.summary()
    assert s["mean_cuts"] == 2 and s["mean_peak_stored_steps"] == 20 and s["max_peak_stored_steps"] == 30
    assert s["max_longest_segment"] == 15 and s["mean_backward_steps"] == 5 and s["cost_updates"] == 2
