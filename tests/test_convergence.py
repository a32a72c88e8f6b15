"""Training to convergence: early stopping, the best checkpoint on test, the converged
flag, clipping and realised costs per run, per-sequence cuts, θ against θ*."""

import json

import numpy as np
import pandas as pd
import pytest

from bptt import estimators as E
from bptt.study.data import make_task
from bptt.study.train import RunConfig, convergence, train, train_group

RECALL = dict(task="recall", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=8, eval_every=5)


def load(folder):
    return (json.loads((folder / "final.json").read_text()), pd.read_csv(folder / "curve.csv"),
            np.load(folder / "params.npz")["theta"])


def test_early_stopping_keeps_the_best_checkpoint_and_scores_it_on_test(tmp_path):
    # a learning rate that overshoots: validation stops improving early
    cfg = RunConfig(**RECALL, optimizer="sgd", lr=30.0, clip=0, estimator="full", updates=400,
                    patience=3, checkpoints=list(range(0, 401, 5)))
    train(cfg, tmp_path / "run", quiet=True)
    final, curve, theta = load(tmp_path / "run")
    assert final["stop_reason"] == "patience" and final["converged"] is True
    u = final["stopped_at"]
    assert u < 400 and curve["update"].iloc[-1] == u
    best = curve["val_metric"].idxmax()  # recall: accuracy, higher is better
    assert final["best_update"] == curve["update"].iloc[best]
    assert final["best_val_metric"] == curve["val_metric"].iloc[best]
    # the stop came `patience` evaluations after the best one, and none of them was better
    assert (curve["update"] > final["best_update"]).sum() == 3
    # params.npz is the best checkpoint, and the test metric is that checkpoint's on the test split
    ck = np.load(tmp_path / "run" / "checkpoints.npz")[f"update_{final['best_update']}"]
    np.testing.assert_array_equal(theta, ck)
    task, model, _ = cfg.build()
    X, Y, mask = task.eval_set(cfg.seq_len, cfg.eval_sequences, "test")
    fwd = model.forward(model.unflatten(theta), X)
    loss = fwd.loss(Y, mask, model.loss)
    assert final["test_loss"] == pytest.approx(loss, rel=1e-6)
    assert final["test_metric"] == pytest.approx(task.metric(loss, fwd.outputs_cm, Y, mask))


def test_a_group_with_early_stopped_runs_equals_each_run_alone(tmp_path):
    from test_train import assert_same_run

    shared = dict(RECALL, optimizer="sgd", updates=60, clip=0)
    runs = [dict(estimator="full", lr=30.0, patience=2), dict(estimator="randomized:power:3", lr=0.5, patience=2),
            dict(estimator="regular:3", lr=0.5, seed=3), dict(estimator="randomized:constant:3", lr=0.5,
                                                              cut_pattern="per_batch")]
    cfgs = [RunConfig(**shared, **r) for r in runs]
    finals = train_group(cfgs, [tmp_path / "group" / str(i) for i in range(len(cfgs))], quiet=True)
    assert finals[0]["stop_reason"] == "patience" and finals[2]["stop_reason"] == "budget"
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / "alone" / str(i), quiet=True)
        assert_same_run(tmp_path / "alone" / str(i), tmp_path / "group" / str(i))


@pytest.mark.parametrize("metric,higher,reason,expect", [
    ([10, 8, 7.0, 6.99, 6.98, 6.97], False, "budget", True),  # < 1% over the last 20% of 100 updates
    ([10, 8, 7.0, 6.9, 6.8, 6.5], False, "budget", False),  # still falling: 7.1% over the window
    ([0.2, 0.5, 0.8, 0.9, 0.9, 0.905], True, "budget", True),
    ([0.2, 0.5, 0.8, 0.9, 0.9, 0.95], True, "budget", False),
    ([10, 8, 7.0, 6.9, 6.8, 6.5], False, "patience", True),
    ([10, 8, 7.0, 6.99, 6.98, 6.97], False, "diverged", False),
])
def test_converged_flag(metric, higher, reason, expect):
    rows = [{"update": 20 * i, "val_metric": v} for i, v in enumerate(metric)]
    converged, late = convergence(rows, higher, 0.2, 0.01, reason)
    assert converged is expect
    before, after = metric[-2], metric[-1]  # the window [80, 100] starts at the 5th evaluation
    assert late == pytest.approx((after - before) / before * (1 if higher else -1))


def test_clip_fraction_costs_and_cut_pattern_are_recorded(tmp_path):
    shared = dict(RECALL, updates=20)
    finals = train_group([RunConfig(**shared, estimator="regular:4", clip=1e-6),
                          RunConfig(**shared, estimator="randomized:power:4", clip=0),
                          RunConfig(**shared, estimator="randomized:power:4", clip=0, cut_pattern="per_batch")],
                         [tmp_path / n for n in "abc"], quiet=True)
    reg, per_seq, per_batch = finals
    assert reg["clip_fraction"] == 1.0 and per_seq["clip_fraction"] == 0.0
    # regular(4) on T = 10: 2 cuts, segments of 4, 8 sequences
    assert reg["mean_cuts"] == 2 and reg["max_peak_stored_steps"] == 32 and reg["peak_backward_steps"] == 4
    assert reg["mean_backward_steps"] == 8 * (10 - 1 - 2) and reg["cost_updates"] == 20
    # the same estimator stream: per-batch cuts draw fewer uniforms, so the runs differ
    assert per_seq["test_loss"] != per_batch["test_loss"]
    for f in (per_seq, per_batch):
        assert 0 < f["mean_cuts"] < 9 and f["cost_updates"] == 20
    # one shared pattern stores B x the longest segment at its peak
    assert per_batch["max_peak_stored_steps"] == 8 * per_batch["peak_backward_steps"]


def test_training_plans_per_sequence_cuts():
    """What fit() asks of a randomized estimator: (1, B, T) rows that differ."""
    est = E.parse_estimator("randomized:constant:3")
    m, _, _ = est.plan(10, 1, np.random.default_rng(0), B=8)
    assert m.shape == (1, 8, 10) and len({row.tobytes() for row in m[0]}) > 1


def test_timemachine_runs_are_epochs_evaluated_on_whole_splits(tmp_path):
    cfg = RunConfig(task="timemachine", hidden=8, seq_len=32, batch_size=1024, updates=12, eval_every=6,
                    optimizer="sgd", lr=1.0, init="normal", init_scale=0.01)
    final = train(cfg, tmp_path / "tm", quiet=True)
    assert final["epochs_done"] == pytest.approx(12 / 10 * (10_000 / 10_000), rel=0.05)
    curve = pd.read_csv(tmp_path / "tm" / "curve.csv")
    assert curve["tokens"].iloc[-1] == (10_000 + 2 * 1024) * 32  # one epoch (last batch 784) + 2
    # untrained N(0, 0.01²) weights predict nearly uniformly: perplexity near 28
    assert 26 < curve["val_metric"].iloc[0] < 28.5
    task = make_task("timemachine")
    assert final["test_metric"] > 1 and task.sampled_eval_sets is False


def test_influence_records_theta_against_theta_star(tmp_path):
    cfg = RunConfig(task="influence", seq_len=100, optimizer="sgd", lr=0.01, clip=0, updates=40,
                    eval_every=10, estimator="full")
    final = train(cfg, tmp_path / "inf", quiet=True)
    star = make_task("influence").optimum(100)
    assert final["theta_star"] == star and final["clip_fraction"] == 0
    # full BPTT without clipping moves θ from 0.5 towards θ*
    assert abs(final["theta"] - star) < abs(0.5 - star)


def test_influence_optimum_minimizes_the_loss():
    task = make_task("influence")
    model = task.make_model(None, None)
    X, Y, mask = task.batch(None, 1, 60)
    star = task.optimum(60)

    def loss(th):
        return model.forward({"theta": np.array([th])}, X).loss(Y, mask, model.loss)

    assert loss(star) < min(loss(star - 1e-3), loss(star + 1e-3))


@pytest.mark.parametrize("kw,match", [({"init": "xavier"}, "valid inits"),
                                      ({"cut_pattern": "per_token"}, "per_sequence, per_batch"),
                                      ({"patience": -1}, "patience must be"),
                                      ({"converge_window": 0}, "converge_window")])
def test_bad_convergence_settings_fail_early(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        train(RunConfig(**RECALL, **kw), tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()


def test_gradient_statistics_measure_the_cut_pattern_training_uses():
    """Per-sequence cuts: still unbiased, and less variance than one pattern per batch."""
    from bptt.study.gradstats import gradient_stats

    task = make_task("recall", lag=3, alphabet=4)
    model = task.make_model("tanh", 8)
    params = model.init(np.random.default_rng(0))
    est = [E.parse_estimator("randomized:constant:3")]
    rows = {cp: gradient_stats(task, model, params, est, 12, 16, K=32, n_batches=3, cut_pattern=cp)
            .set_index("kind").loc["randomized"] for cp in ("per_batch", "per_sequence")}
    for row in rows.values():
        assert row["relative_bias2_lo"] <= 0 <= row["relative_bias2_hi"]
    assert rows["per_sequence"]["relative_variance"] < rows["per_batch"]["relative_variance"]
    assert rows["per_sequence"]["cut_pattern"] == "per_sequence"
    with pytest.raises(ValueError, match="per_sequence, per_batch"):
        gradient_stats(task, model, params, est, 12, 16, K=2, n_batches=2, cut_pattern="per_token")
