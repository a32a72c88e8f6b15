"""Gradient statistics: unbiased estimators show no bias; identities hold."""

import numpy as np
import pytest

from bptt import estimators as E
from bptt.study.data import make_task
from bptt.study.gradstats import gradient_stats
from bptt.study.lagprofile import lag_profile


@pytest.fixture(scope="module")
def stats():
    task = make_task("timemachine")
    model = task.make_model("gru", 12)
    params = model.init(np.random.default_rng(0))
    ests = [E.parse_estimator(s) for s in ("regular:3", "windowed:3", "randomized:constant:3",
                                           "randomized:power:3", "randomized:artbp:3",
                                           "randomized:minlen:3")]
    return gradient_stats(task, model, params, ests, seq_len=20, batch_size=8, K=48, n_batches=4,
                          seed=1).set_index("estimator")


def test_unbiased_estimators_have_bias_consistent_with_zero(stats):
    rand = stats[stats["kind"] == "randomized"]
    assert len(rand) == 4
    assert (rand["relative_bias2_lo"] <= 0).all() and (rand["relative_bias2_hi"] >= 0).all()
    assert (rand["relative_variance"] > 0).all()


def test_truncated_estimators_are_biased(stats):
    for est in ("regular(3)", "windowed(3)"):
        row = stats.loc[est]
        assert row["relative_bias"] > 0.01
        assert row["relative_variance"] == 0
        assert row["relative_bias2_lo"] == row["relative_bias2_hi"] == row["relative_bias2"]
    # each loss sees 3 steps in windowed(3), between 1 and 3 in regular(3)
    assert stats.loc["windowed(3)", "relative_bias"] < stats.loc["regular(3)", "relative_bias"]


def test_mse_is_bias_squared_plus_variance(stats):
    np.testing.assert_allclose(stats["relative_mse"],
                               stats["relative_bias2"] + stats["relative_variance"], rtol=1e-9,
                               atol=1e-15)
    assert stats.loc["full", "relative_mse"] == 0 and stats.loc["full", "cosine_mean"] == pytest.approx(1)
    assert (stats["sgd_relative_variance"] > 0).all()


def test_biased_estimator_is_detected():
    """The interval excludes zero for an estimator with a known bias (the test can fail)."""
    from bptt.study.gradstats import estimator_stats

    rng = np.random.default_rng(0)
    g = np.ones(50)
    G = g + 0.3 + rng.normal(size=(64, 50))
    out = estimator_stats([G], [g])
    assert out["relative_bias2_lo"] > 0
    assert out["relative_bias2"] == pytest.approx(0.09, rel=0.3)


def test_lag_profile_vanishes_and_explodes():
    small = lag_profile("linear", 0.5, seq_len=30)
    large = lag_profile("linear", 1.5, seq_len=30)
    assert small["relative_norm"].iloc[-1] < 1e-4
    assert large["relative_norm"].iloc[-1] > 1e2
    saturated = lag_profile("tanh", 0.5, seq_len=30)
    assert saturated["relative_norm"].iloc[-1] < small["relative_norm"].iloc[-1] * 10
