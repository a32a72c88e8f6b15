"""Equalities between estimators, exact unbiasedness by enumeration, Monte Carlo."""

import itertools

import numpy as np
import pytest

from bptt import estimators as E
from bptt.engine.backprop import backward
from bptt.engine.losses import LOSSES, class_major_targets
from bptt.engine.schedules import make_schedule

CELLS = ["linear", "tanh", "gru", "lstm"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tau", [9, 10, 50])
def test_long_truncations_equal_full(small_problem, cell, tau):
    model, params, batch = small_problem(cell=cell, T=9)
    _, full = E.sample(model, params, batch, E.Full())
    for est in (E.Regular(tau), E.Windowed(tau)):
        _, G = E.sample(model, params, batch, est)
        np.testing.assert_allclose(G, full, rtol=0, atol=1e-12 * np.abs(full).max())


def reference_truncated(model, params, batch, spans, eps=1e-6):
    """Slow reference: Σ over (t0, t1, owners) of finite-difference gradients of the
    losses at steps ``owners`` with the state entering step t0 held fixed.

    Independent of the engine's backward code: it only reruns forward steps.
    """
    X, Y, mask = batch
    fwd = model.forward(params, X)
    total = mask.sum()
    flat = model.flatten(params)

    def piece_loss(f, t0, t1, owners):
        p = model.unflatten(f)
        xs = X[t0 : t1 + 1]
        states = model.forward(p, xs, state0=fwd.states[t0]).states
        W_o, b_o = model.readout(p)
        out = states[1:, :, : model.hidden_size] @ W_o + b_o
        w = np.zeros_like(mask[t0 : t1 + 1])
        for s in owners:
            w[s - t0] = mask[s]
        if not w.any():
            return 0.0
        cm = out.reshape(-1, out.shape[-1]).T
        l, _ = LOSSES[model.loss](cm, class_major_targets(Y[t0 : t1 + 1], model.loss), w)
        return l * w.sum() / total

    g = np.zeros_like(flat)
    for t0, t1, owners in spans:
        for i in range(flat.size):
            f = flat.copy()
            f[i] += eps
            lp = piece_loss(f, t0, t1, owners)
            f[i] -= 2 * eps
            lm = piece_loss(f, t0, t1, owners)
            g[i] += (lp - lm) / (2 * eps)
    return g


def windowed_spans(T, tau):
    """The loss at t sees the steps max(0, t-τ+1) .. t."""
    return [(max(0, t - tau + 1), t, [t]) for t in range(T)]


def regular_spans(T, tau):
    """Chunks of τ steps; every loss of a chunk sees the chunk up to itself."""
    return [(s, min(s + tau, T) - 1, list(range(s, min(s + tau, T)))) for s in range(0, T, tau)]


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("tau", [1, 3])
@pytest.mark.parametrize("estimator,spans", [(E.Windowed, windowed_spans), (E.Regular, regular_spans)])
def test_truncations_against_slow_reference(small_problem, cell, tau, estimator, spans):
    T = 7
    model, params, batch = small_problem(cell=cell, T=T, B=2, V=3, H=2)
    _, G = E.sample(model, params, batch, estimator(tau))
    ref = reference_truncated(model, params, batch, spans(T, tau))
    np.testing.assert_allclose(G[0], ref, rtol=1e-6, atol=1e-9)


def test_windowed_one_equals_regular_one(small_problem):
    model, params, batch = small_problem(cell="gru", T=9)
    _, a = E.sample(model, params, batch, E.Windowed(1))
    _, b = E.sample(model, params, batch, E.Regular(1))
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


SCHEDULE_CASES = [
    ("constant", 3, {}),
    ("minlen", 3.5, {"min_length": 2}),
    ("power", 3, {"alpha": 1.5}),
    ("artbp", 2.5, {}),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name,mean,extra", SCHEDULE_CASES)
def test_randomized_is_exactly_unbiased_by_enumeration(small_problem, cell, name, mean, extra):
    T = 8
    model, params, batch = small_problem(cell=cell, T=T)
    schedule = make_schedule(name, mean, **extra)
    X, Y, mask = batch
    fwd = model.forward(params, X)
    _, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
    patterns = np.array(list(itertools.product([False, True], repeat=T - 1)))
    cuts = np.concatenate([np.ones((len(patterns), 1), bool), patterns], axis=1)
    prob = schedule.pattern_probability(cuts)
    assert len(cuts) == 2 ** (T - 1)
    assert abs(prob.sum() - 1.0) < 1e-12
    # all 128 patterns as one K = 128 batched backward pass
    g = backward(model, params, fwd, seed, schedule.multipliers(cuts))
    G = model.flatten({**g, **{k: np.broadcast_to(v, (len(cuts),) + v.shape) for k, v in ro.items()}},
                      K=len(cuts))
    expectation = prob @ G
    _, full = E.sample(model, params, batch, E.Full())
    np.testing.assert_allclose(expectation, full[0], rtol=0, atol=1e-10 * np.abs(full).max())
    # and the estimator is not trivially exact: individual patterns differ from full
    assert np.abs(G - full).max() > 1e-3 * np.abs(full).max()


@pytest.mark.parametrize("cell,name,mean,extra",
                         [("tanh", *case) for case in SCHEDULE_CASES] + [("gru", *SCHEDULE_CASES[2])])
def test_per_sequence_cuts_are_exactly_unbiased_by_enumeration(small_problem, cell, name, mean, extra):
    """Each of the B = 2 sequences draws its own pattern: enumerate all 16 x 16 pairs."""
    T, B = 5, 2
    model, params, batch = small_problem(cell=cell, T=T, B=B)
    schedule = make_schedule(name, mean, **extra)
    X, Y, mask = batch
    fwd = model.forward(params, X)
    _, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
    tails = np.array(list(itertools.product([False, True], repeat=T - 1)))
    one = np.concatenate([np.ones((len(tails), 1), bool), tails], axis=1)  # (16, T)
    pairs = np.array(list(itertools.product(range(len(one)), repeat=B)))  # (256, B)
    cuts = one[pairs]  # (256, B, T): sample k cuts sequence b by one[pairs[k, b]]
    prob = schedule.pattern_probability(cuts).prod(axis=1)
    assert abs(prob.sum() - 1.0) < 1e-12
    K = len(cuts)
    G = E.gradients_from_plan(model, params, fwd, seed, ro, schedule.multipliers(cuts), None, False)
    _, full = E.sample(model, params, batch, E.Full())
    np.testing.assert_allclose(prob @ G, full[0], rtol=0, atol=1e-10 * np.abs(full).max())
    # not trivially exact, and not the per-batch estimator: the sequences' cuts differ
    assert G.shape[0] == K and np.abs(G - full).max() > 1e-3 * np.abs(full).max()
    assert (cuts[:, 0] != cuts[:, 1]).any()


@pytest.mark.parametrize("cell", CELLS)
def test_per_sequence_multipliers_equal_each_sequence_run_alone(small_problem, cell):
    T, B, K = 9, 3, 4
    model, params, batch = small_problem(cell=cell, T=T, B=B)
    X, Y, mask = batch
    est = E.parse_estimator("randomized:constant:3")
    m, _, _ = est.plan(T, K, np.random.default_rng(2), B=B)
    assert m.shape == (K, B, T) and not np.array_equal(m[:, 0], m[:, 1])
    fwd = model.forward(params, X)
    _, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
    together = E.gradients_from_plan(model, params, fwd, seed, ro, m, None, False)
    alone = []
    for b in range(B):  # a batch of one: its loss is the mean over its own T steps
        f = model.forward(params, X[:, b : b + 1])
        _, s, r = model.loss_and_seed(params, f, Y[:, b : b + 1], mask[:, b : b + 1])
        alone.append(E.gradients_from_plan(model, params, f, s, r, m[:, b], None, False))
    np.testing.assert_allclose(together, np.mean(alone, axis=0), rtol=1e-12, atol=1e-14)


def test_per_sequence_rows_that_agree_equal_the_shared_pattern(small_problem):
    """(K, B, T) multipliers with identical rows give bit-identical gradients to (K, T)."""
    T, B = 10, 3
    model, params, batch = small_problem(cell="gru", T=T, B=B)
    fwd = model.forward(params, batch[0])
    _, seed, _ = model.loss_and_seed(params, fwd, batch[1], batch[2])
    m, _, _ = E.parse_estimator("randomized:power:3").plan(T, 5, np.random.default_rng(4))
    shared = backward(model, params, fwd, seed, m)
    rows = backward(model, params, fwd, seed, np.repeat(m[:, None, :], B, axis=1))
    for name in shared:
        assert np.array_equal(shared[name], rows[name])
    with pytest.raises(ValueError, match=r"\(K, 10\) or \(K, 3, 10\)"):
        backward(model, params, fwd, seed, np.ones((5, 2, T)))


def test_deterministic_plans_ignore_the_batch_size():
    for spec in ("full", "regular:3", "windowed:3"):
        est = E.parse_estimator(spec)
        a, b = est.plan(8, 1, None), est.plan(8, 1, None, B=4)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[0].ndim == 2


@pytest.mark.parametrize("name,mean,extra", SCHEDULE_CASES)
def test_monte_carlo_mean_within_four_standard_errors(small_problem, name, mean, extra):
    model, params, batch = small_problem(cell="tanh", T=12)
    est = E.Randomized(make_schedule(name, mean, **extra))
    N = 20_000
    _, G = E.sample(model, params, batch, est, K=N, rng=np.random.default_rng(123))
    _, full = E.sample(model, params, batch, E.Full())
    se = G.std(axis=0, ddof=1) / np.sqrt(N)
    z = np.abs(G.mean(axis=0) - full[0]) / np.maximum(se, 1e-300)
    random_coords = se > 1e-14
    assert random_coords.sum() > 10
    assert z[random_coords].max() < 4.0
    np.testing.assert_allclose(G.mean(0)[~random_coords], full[0][~random_coords], atol=1e-12)


def test_batched_samples_equal_one_at_a_time(small_problem):
    """K samples in one (B*K) recursion equal K separate recursions."""
    model, params, batch = small_problem(cell="lstm", T=10)
    X, Y, mask = batch
    fwd = model.forward(params, X)
    _, seed, _ = model.loss_and_seed(params, fwd, Y, mask)
    sch = make_schedule("constant", 3)
    m = sch.multipliers(sch.sample_cuts(10, np.random.default_rng(0), size=5))
    together = backward(model, params, fwd, seed, m)
    for k in range(5):
        alone = backward(model, params, fwd, seed, m[k : k + 1])
        for name in together:
            np.testing.assert_allclose(together[name][k], alone[name][0], rtol=1e-13, atol=1e-15)


def test_same_seed_gives_bit_identical_gradients(small_problem):
    model, params, batch = small_problem(cell="gru", T=16)
    est = E.parse_estimator("randomized:power:4")
    _, a = E.sample(model, params, batch, est, K=32, rng=np.random.default_rng(7))
    _, b = E.sample(model, params, batch, est, K=32, rng=np.random.default_rng(7))
    _, c = E.sample(model, params, batch, est, K=32, rng=np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_chunked_k_equals_unchunked(small_problem, monkeypatch):
    model, params, batch = small_problem(cell="tanh", T=10)
    est = E.parse_estimator("randomized:constant:3")
    _, a = E.sample(model, params, batch, est, K=12, rng=np.random.default_rng(1))
    monkeypatch.setattr(E, "MAX_STORE_BYTES", 1)
    _, b = E.sample(model, params, batch, est, K=12, rng=np.random.default_rng(1))
    np.testing.assert_allclose(a, b, rtol=1e-14)


@pytest.mark.parametrize(
    "spec,label",
    [("full", "full"), ("regular:8", "regular(8)"), ("windowed:4", "windowed(4)"),
     ("randomized:constant:8", "randomized-constant(8)"),
     ("randomized:power:8:alpha=2", "randomized-power(8)")],
)
def test_parse_estimator(spec, label):
    assert E.parse_estimator(spec).label == label


@pytest.mark.parametrize(
    "spec,match",
    [("bogus", "valid estimators: full, regular, windowed, randomized"),
     ("regular:0", "tau must be an integer >= 1"),
     ("randomized:uniform:8", "valid schedules: constant, minlen, power, artbp"),
     ("randomized:constant:0.5", "mean segment length must be > 1"),
     ("regular", "bad estimator spec")],
)
def test_bad_estimator_specs_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        E.parse_estimator(spec)
