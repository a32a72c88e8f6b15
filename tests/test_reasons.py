"""d2l's reasons along training: windowed MSE, trained lag profiles, checkpoints, the join."""

import numpy as np
import pandas as pd
import pytest

from bptt import estimators as E
from bptt.engine.cells import influence_system
from bptt.study.data import make_task
from bptt.study.gradstats import gradient_stats
from bptt.study.lagprofile import reach_beyond, trained_lag_profile
from bptt.study.reasons import reasons_outcomes, reasons_training
from bptt.study.train import RunConfig, load_checkpoint, train


def test_windowed_mse_shrinks_variance_not_bias():
    task = make_task("recall", lag=3, alphabet=4)
    model = task.make_model("tanh", 8)
    params = model.init(np.random.default_rng(0))
    ests = [E.parse_estimator(s) for s in ("regular:2", "randomized:constant:2")]
    df = gradient_stats(task, model, params, ests, seq_len=10, batch_size=4, K=8, n_batches=2,
                        window=5).set_index("kind")
    assert (df["window"] == 5).all()
    np.testing.assert_allclose(df["relative_mse_window"],
                               df["relative_bias2"] + df["relative_variance"] / 5, rtol=1e-12)
    # a deterministic estimator's MSE does not shrink by averaging; a random one's does
    assert df.loc["regular", "relative_mse_window"] == df.loc["regular", "relative_mse"]
    assert df.loc["randomized", "relative_mse_window"] < df.loc["randomized", "relative_mse"]
    with pytest.raises(ValueError, match="window"):
        gradient_stats(task, model, params, ests, seq_len=10, batch_size=4, window=0)


def test_trained_lag_profile_is_the_chapter_closed_form_on_the_linear_system():
    """Influence: s_t = A s_{t-1} + θ u, so ∂l_T/∂s_{T-k} = (Aᵀ)^k ∂l_T/∂s_T exactly."""
    task = make_task("influence", units=6, positive=2)
    model = task.make_model(None, None)
    params = {"theta": np.array([0.3])}
    T = 12
    profile = trained_lag_profile(task, model, params, T, batch_size=1, n_batches=2)
    A, _ = influence_system(6, 2)
    X, Y, mask = task.batch(None, 1, T)
    s_T = model.forward(params, X).states[-1, 0]
    delta = np.zeros(6)
    delta[0] = s_T[0] - Y[-1, 0, 0]  # ½ (s¹_T - y)², one loss term
    expected = [np.linalg.norm(np.linalg.matrix_power(A.T, k) @ delta) for k in range(T)]
    np.testing.assert_allclose(profile["grad_norm"] / profile["grad_norm"][0],
                               np.array(expected) / expected[0], rtol=1e-10)
    assert profile["relative_norm"].iloc[0] == 1
    assert reach_beyond(profile, 0) == pytest.approx(1)
    assert reach_beyond(profile, T) == 0
    shares = [reach_beyond(profile, k) for k in range(T + 1)]
    assert all(a >= b for a, b in zip(shares, shares[1:]))


def test_checkpoints_after_an_early_stop_hold_the_parameters_at_the_stop(tmp_path):
    cfg = RunConfig(task="recall", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=8,
                    optimizer="sgd", lr=30.0, clip=0, updates=200, eval_every=5, eval_sequences=16,
                    patience=2, checkpoints=list(range(0, 201, 5)))
    final = train(cfg, tmp_path / "run", quiet=True)
    assert final["stop_reason"] == "patience"
    stop = final["stopped_at"]
    model = cfg.build()[1]
    at_stop = load_checkpoint(tmp_path / "run" / "checkpoints.npz", model, stop)
    at_end = load_checkpoint(tmp_path / "run" / "checkpoints.npz", model, 200)
    for k in at_stop:
        np.testing.assert_array_equal(at_stop[k], at_end[k])
    with pytest.raises(ValueError, match="no update 3"):
        load_checkpoint(tmp_path / "run" / "checkpoints.npz", model, 3)


def _gradstats_row(task, T, checkpoint, progress, seed, kind, tau, schedule, mse, var, cos):
    bias2 = mse - var
    return {"task": task, "cell": "tanh", "seq_len": T, "checkpoint": checkpoint,
            "progress": progress, "seed": seed, "kind": kind, "tau": tau, "schedule": schedule,
            "relative_mse": mse, "relative_variance": var, "relative_bias2": bias2,
            "relative_mse_window": bias2 + var / 4, "window": 4, "cosine_mean": cos,
            "sgd_relative_variance": 0.5 if task == "timemachine" else 0.0}


def _inputs():
    gs, lp, runs = [], [], []
    for task in ("timemachine", "recall"):
        for checkpoint, progress in (("init", 0.0), ("final", 1.0)):
            for seed in (0, 1):
                gs.append(_gradstats_row(task, 8, checkpoint, progress, seed, "full", 0, "", 0, 0, 1))
                gs.append(_gradstats_row(task, 8, checkpoint, progress, seed, "regular", 2, "",
                                         0.1, 0.0, 0.95 + 0.01 * seed))
                gs.append(_gradstats_row(task, 8, checkpoint, progress, seed, "randomized", 2,
                                         "constant", 0.3, 0.28, 0.5))
                for k in range(8):  # norms 2^-k: share beyond τ = 2 is (1/4)(1 - 2^-6)/(1 - 2^-8)
                    lp.append({"task": task, "cell": "tanh", "seq_len": 8, "checkpoint": checkpoint,
                               "progress": progress, "seed": seed, "k": k, "grad_norm": 2.0 ** -k,
                               "relative_norm": 2.0 ** -k})
        for strategy, tau, gap in (("full", 0, 0.2), ("regular", 2, 0.1)):
            for seed in (0, 1, 2):
                # seed 2 has not converged: its gap (5.0) must not count
                runs.append({"task": task, "cell": "tanh", "T": 8, "strategy": strategy, "tau": tau,
                             "seed": seed, "diverged": False, "converged": seed < 2,
                             "best_train_eval_loss": 1.0,
                             "best_val_loss": 1.0 + (gap if seed < 2 else 5.0 * (tau + 1))})
    verdict = pd.DataFrame([
        {"task": "timemachine", "cell": "tanh", "T": 8, "tau": 2, "schedule": "constant",
         "outcome": "worse", "effect": -0.05},
        {"task": "recall", "cell": "tanh", "T": 8, "tau": 2, "schedule": "constant",
         "outcome": "better", "effect": 0.1},
    ])
    return pd.DataFrame(gs), pd.DataFrame(lp), pd.DataFrame(runs), verdict


def test_reasons_sit_beside_each_comparisons_outcome():
    gs, lp, runs, verdict = _inputs()
    t = reasons_training(gs, lp, runs, verdict)
    assert len(t) == 4  # 2 comparisons × 2 checkpoints
    row = t[(t.task == "timemachine") & (t.checkpoint == "final")].iloc[0]
    assert row.outcome == "worse" and row.seeds == 2
    assert row.cosine_regular == pytest.approx(0.955)
    assert row.mse_ratio == pytest.approx(3.0)
    # bias² + var/W: (0.02 + 0.07) / 0.1
    assert row.mse_ratio_window == pytest.approx(0.9)
    assert row.variance_over_sgd_noise == pytest.approx(0.56)
    assert row.reach_beyond_tau == pytest.approx(0.25 * (1 - 2.0 ** -6) / (1 - 2.0 ** -8))
    assert row.gap_regular_minus_full == pytest.approx(-0.1) and row.reason3_note == ""
    assert row.reason3_runs == 4
    rec = t[(t.task == "recall") & (t.checkpoint == "final")].iloc[0]
    assert np.isnan(rec.variance_over_sgd_noise)  # no minibatch noise: not applicable
    assert np.isnan(rec.gap_regular_minus_full) and "not applicable" in rec.reason3_note
    assert list(t[t.task == "recall"]["checkpoint"]) == ["init", "final"]  # by progress

    s = reasons_outcomes(t, cosine_support=0.9).set_index(["task", "checkpoint"])
    tm = s.loc[("timemachine", "final")]
    assert tm.outcome == "worse" and tm.comparisons == 1
    assert (tm.cosine_ge_support, tm.mse_ratio_gt_1, tm.mse_ratio_window_gt_1, tm.both_1_and_2) == (1, 1, 0, 1)
    assert (tm.gap_measured, tm.gap_smaller) == (1, 1)
    assert s.loc[("recall", "final")].gap_measured == 0
