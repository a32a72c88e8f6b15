"""Training runs: reproducibility, the estimator view, learning and divergence."""

import json

import numpy as np
import pandas as pd
import pytest

from bptt.train import RunConfig, train

NOT_TIMED = ["wall_time"]


def run(tmp_path, name, **kw):
    cfg = RunConfig(**{"task": "recall", "lag": 6, "alphabet": 4, "hidden": 16, "seq_len": 16,
                       "batch_size": 32, "updates": 60, "eval_every": 20, "lr": 0.01, **kw})
    final = train(cfg, tmp_path / name, quiet=True)
    return final, pd.read_csv(tmp_path / name / "curve.csv")


def test_same_seed_gives_identical_curves(tmp_path):
    _, a = run(tmp_path, "a", estimator="randomized:power:4", seed=3)
    _, b = run(tmp_path, "b", estimator="randomized:power:4", seed=3)
    _, c = run(tmp_path, "c", estimator="randomized:power:4", seed=4)
    pd.testing.assert_frame_equal(a.drop(columns=NOT_TIMED), b.drop(columns=NOT_TIMED))
    assert not a.drop(columns=NOT_TIMED).equals(c.drop(columns=NOT_TIMED))
    pa = np.load(tmp_path / "a" / "params.npz")["theta"]
    pb = np.load(tmp_path / "b" / "params.npz")["theta"]
    assert np.array_equal(pa, pb)


def test_long_regular_truncation_trains_exactly_like_full(tmp_path):
    _, full = run(tmp_path, "full", estimator="full", dtype="float64")
    _, reg = run(tmp_path, "reg", estimator="regular:16", dtype="float64")
    _, short = run(tmp_path, "short", estimator="regular:2", dtype="float64")
    pd.testing.assert_frame_equal(full.drop(columns=NOT_TIMED), reg.drop(columns=NOT_TIMED))
    assert not full.drop(columns=NOT_TIMED).equals(short.drop(columns=NOT_TIMED))


def test_full_learns_the_lag_and_short_regular_truncation_does_not(tmp_path):
    kw = dict(updates=400, eval_every=100, seed=0)
    full, _ = run(tmp_path, "full", estimator="full", **kw)
    short, _ = run(tmp_path, "short", estimator="regular:2", **kw)
    chance = full["chance"]
    assert chance == 0.25
    assert full["final_val_metric"] > 0.9
    assert abs(short["final_val_metric"] - chance) < 0.1


def test_diverged_run_is_recorded_not_raised(tmp_path):
    final, curve = run(tmp_path, "div", cell="linear", optimizer="sgd", lr=1e4, clip=0,
                       estimator="full", updates=50, eval_every=5)
    assert final["diverged"] is True
    assert 1 <= final["diverged_at"] <= 50
    assert np.isnan(final["final_val_metric"])
    saved = json.loads((tmp_path / "div" / "final.json").read_text())
    assert saved["diverged"] is True
    assert (tmp_path / "div" / "params.npz").exists()
    assert np.isfinite(np.load(tmp_path / "div" / "params.npz")["theta"]).all()


def test_checkpoints_and_outputs(tmp_path):
    final, curve = run(tmp_path, "ck", estimator="windowed:3", checkpoints=[0, 40])
    assert (tmp_path / "ck" / "checkpoint_0.npz").exists()
    assert (tmp_path / "ck" / "checkpoint_40.npz").exists()
    assert list(curve.columns) == ["update", "tokens", "train_loss", "train_eval_loss", "val_loss",
                                   "val_metric", "grad_norm", "wall_time"]
    assert list(curve["update"]) == [0, 20, 40, 60]
    assert final["peak_backward_steps"] == 3
    # no temporary files are left behind
    assert not list((tmp_path / "ck").glob(".*"))


def test_influence_truncation_follows_the_wrong_sign(tmp_path):
    kw = dict(task="influence", seq_len=200, optimizer="sgd", lr=0.001, clip=10,
              updates=150, eval_every=50)
    full, fc = run(tmp_path, "full", estimator="full", **kw)
    short, sc = run(tmp_path, "short", estimator="regular:10", **kw)
    assert fc["val_loss"].iloc[-1] < fc["val_loss"].iloc[0]
    assert sc["val_loss"].iloc[-1] > sc["val_loss"].iloc[0]


@pytest.mark.parametrize(
    "kw,match",
    [({"optimizer": "rmsprop"}, "valid: sgd, adam"), ({"seq_len": 0}, "seq_len must be >= 1"),
     ({"estimator": "regular:0"}, "tau"), ({"seed": -1}, "seed must be >= 0"),
     ({"cell": "rnn"}, "valid cells")],
)
def test_bad_configuration_fails_before_any_output(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run(tmp_path, "bad", **kw)
    assert not (tmp_path / "bad").exists()
