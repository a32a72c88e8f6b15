"""A group of replicas computes, for each replica, exactly what that run computes alone."""

import numpy as np
import pytest

from bptt import estimators as E
from bptt.study.data import make_task

CELLS = ["linear", "tanh", "gru", "lstm", "influence"]
SPECS = ["full", "regular:3", "windowed:3", "randomized:constant:3"]


def group_problem(cell, R, T=9, B=3, V=5, H=4, dtype=np.float32, seed=0):
    """A model, R different parameter vectors and R different batches of one shape."""
    rng = np.random.default_rng(seed)
    if cell == "influence":
        task = make_task("influence", units=6, positive=2)
        model = task.make_model("influence", None)
        thetas = np.stack([model.flatten(model.init(rng, dtype)) for _ in range(R)])
        thetas[:, 0] += rng.uniform(-0.2, 0.2, R).astype(dtype)
        X, Y, mask = (np.stack([a] * R) for a in task.batch(rng, 1, T))
        return model, thetas, X, Y, mask
    task = make_task("recall", lag=2, alphabet=V)
    model = task.make_model(cell, H)
    thetas = np.stack([model.flatten(model.init(rng, dtype)) for _ in range(R)])
    X, Y, mask = (np.stack(a) for a in zip(*(task.batch(rng, B, T) for _ in range(R))))
    return model, thetas, X, Y, mask


def alone(model, theta, X, Y, mask, plan):
    """The single-run path of train.py."""
    params = model.unflatten(theta)
    with np.errstate(all="ignore"):
        fwd = model.forward(params, X)
        loss, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
        g = E.gradients_from_plan(model, params, fwd, seed, ro, *plan)[0]
    return loss, g


def plans_for(specs, T, seed=0):
    rng = np.random.default_rng(seed)
    return [E.parse_estimator(s).plan(T, 1, rng) for s in specs]


def assert_group_equals_alone(model, thetas, X, Y, mask, plans):
    losses, grads = E.group_loss_and_gradients(model, thetas, X, Y, mask, plans)
    assert losses.shape == (len(plans),) and grads.shape == thetas.shape and grads.dtype == thetas.dtype
    for r, plan in enumerate(plans):
        loss, g = alone(model, thetas[r], X[r], Y[r], mask[r], plan)
        np.testing.assert_array_equal(losses[r], loss, err_msg=f"loss of replica {r}")
        np.testing.assert_array_equal(grads[r], g, err_msg=f"gradient of replica {r}")
    return losses, grads


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_replica_equals_run_alone(cell, spec, dtype):
    R, T = 4, 9
    model, thetas, X, Y, mask = group_problem(cell, R, T=T, dtype=dtype)
    thetas[2] = np.inf if cell == "influence" else np.nan  # a diverged replica
    thetas[2, -1] = np.nan
    losses, grads = assert_group_equals_alone(model, thetas, X, Y, mask, plans_for([spec] * R, T))
    healthy = [0, 1, 3]
    assert np.isfinite(losses[healthy]).all() and np.isfinite(grads[healthy]).all()
    assert not np.isfinite(grads[2]).all()


@pytest.mark.parametrize("cell", CELLS)
def test_group_of_mixed_estimators(cell):
    specs = ["full", "windowed:3", "regular:2", "randomized:power:3", "windowed:20", "randomized:constant:2"]
    T = 9
    model, thetas, X, Y, mask = group_problem(cell, len(specs), T=T, seed=1)
    assert_group_equals_alone(model, thetas, X, Y, mask, plans_for(specs, T, seed=3))


@pytest.mark.parametrize("cell", ["gru", "influence"])
def test_group_with_per_sequence_cut_patterns(cell):
    """Plans with one cut pattern per sequence, (1, B, T), beside shared ones."""
    T, B = 9, 3
    model, thetas, X, Y, mask = group_problem(cell, 4, T=T, B=B, seed=4)
    b = X.shape[2]
    rng = np.random.default_rng(6)
    est = E.parse_estimator("randomized:constant:3")
    plans = [est.plan(T, 1, rng, B=b), est.plan(T, 1, rng), est.plan(T, 1, rng, B=b), E.Full().plan(T, 1, rng)]
    assert plans[0][0].shape == (1, b, T)
    assert_group_equals_alone(model, thetas, X, Y, mask, plans)


@pytest.mark.parametrize("spec", ["randomized:power:4", "randomized:constant:3", "randomized:minlen:6",
                                  "randomized:artbp:5", "windowed:3", "full"])
@pytest.mark.parametrize("B", [None, 3])
def test_plans_of_a_group_equal_plans_drawn_one_run_at_a_time(spec, B):
    est = E.parse_estimator(spec)
    T = 40
    together = est.plans(T, [np.random.default_rng(s) for s in range(5)], B)
    for s, (m, inject, reduce) in enumerate(together):
        m1, inject1, reduce1 = est.plan(T, 1, np.random.default_rng(s), B)
        np.testing.assert_array_equal(m, m1)
        assert reduce == reduce1 and (inject is None) == (inject1 is None)


def test_cuts_from_uniforms_equal_the_stepwise_hazard():
    """The sampler with a table of π_k makes the decisions of π_k evaluated per step."""
    from bptt.engine.schedules import make_schedule

    rng = np.random.default_rng(0)
    for name, mean in [("power", 8), ("artbp", 5), ("minlen", 6), ("constant", 3)]:
        sch = make_schedule(name, mean)
        u = rng.random((50, 64))
        cuts = sch.cuts_from_uniforms(u)
        age = np.ones(50, dtype=np.int64)
        for t in range(1, 64):
            keep = u[:, t] < sch.keep_prob(age)
            np.testing.assert_array_equal(cuts[:, t], ~keep)
            age = np.where(keep, age + 1, 1)


def test_group_of_one():
    model, thetas, X, Y, mask = group_problem("gru", 1)
    assert_group_equals_alone(model, thetas, X, Y, mask, plans_for(["windowed:2"], 9))


@pytest.mark.parametrize("cell", ["tanh", "influence"])
def test_group_evaluate_shared_and_per_replica_sets(cell):
    R = 3
    model, thetas, X, Y, mask = group_problem(cell, R)
    for shared in (True, False):
        Xs, Ys, ms = (X[0], Y[0], mask[0]) if shared else (X, Y, mask)
        losses, outs = E.group_evaluate(model, thetas, Xs, Ys, ms)
        assert losses.shape == (R,) and outs.shape[0] == R
        for r in range(R):
            Xr, Yr, mr = (X[0], Y[0], mask[0]) if shared else (X[r], Y[r], mask[r])
            fwd = model.forward(model.unflatten(thetas[r]), Xr)
            np.testing.assert_array_equal(losses[r], fwd.loss(Yr, mr, model.loss))
            np.testing.assert_array_equal(outs[r], fwd.outputs_cm)


def test_group_input_errors_are_clear():
    model, thetas, X, Y, mask = group_problem("tanh", 2)
    with pytest.raises(ValueError, match="one plan per replica"):
        E.group_loss_and_gradients(model, thetas, X, Y, mask, plans_for(["full"], 9))
    with pytest.raises(ValueError, match=r"thetas must have shape \(R, "):
        E.group_loss_and_gradients(model, thetas[:, :-1], X, Y, mask, plans_for(["full"] * 2, 9))
    two_samples = E.parse_estimator("randomized:constant:3").plan(9, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="yields 2 gradients; need one"):
        E.group_loss_and_gradients(model, thetas, X, Y, mask, [two_samples] * 2)


@pytest.mark.parametrize("cell", CELLS)
def test_per_sequence_multipliers_equal_each_sequence_alone(cell):
    """m of shape (K, B, T): sequence b of the batch backpropagates under its own cuts;
    the batch gradient is the sum of the sequences' gradients computed one at a time."""
    from bptt.engine.backprop import backward

    T, B, K = 10, 3, 2
    model, thetas, X, Y, mask = group_problem(cell, 1, T=T, B=B, dtype=np.float64)
    if cell == "influence":  # one sequence per batch in the task; repeat it B times here
        X, Y, mask = X[:, :, [0] * B], Y[:, :, [0] * B], mask[:, :, [0] * B]
    params = model.unflatten(thetas[0])
    X, Y, mask = X[0], Y[0], mask[0]
    fwd = model.forward(params, X)
    _, seed, _ = model.loss_and_seed(params, fwd, Y, mask)
    rng = np.random.default_rng(5)
    m = (rng.random((K, B, T)) < 0.7).astype(float) * rng.uniform(0.5, 2.0, (K, B, T))
    inject = rng.uniform(0.0, 2.0, (K, B, T))
    for reduce in (False, True):
        together = backward(model, params, fwd, seed, m, inject, reduce)
        total = {k: np.zeros_like(v) for k, v in together.items()}
        for b in range(B):
            fb = model.forward(params, X[:, b : b + 1])
            g = backward(model, params, fb, seed[:, b : b + 1], m[:, b], inject[:, b], reduce)
            for k in total:
                total[k] += g[k]
        for k in total:
            np.testing.assert_allclose(together[k], total[k], rtol=1e-12, atol=1e-14)
    # a pattern shared by all sequences is the (K, T) form
    per_sequence = backward(model, params, fwd, seed, np.repeat(m[:, :1], B, axis=1))
    shared = backward(model, params, fwd, seed, m[:, 0])
    for k in shared:
        np.testing.assert_array_equal(per_sequence[k], shared[k])
