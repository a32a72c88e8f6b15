"""Training runs: reproducibility, the estimator view, learning and divergence."""

import json

import numpy as np
import pandas as pd
import pytest

from bptt.study.train import RunConfig, train, train_group

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
    with np.load(tmp_path / "ck" / "checkpoints.npz") as z:
        assert sorted(z) == ["update_0", "update_40"]
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


# -- groups of runs: each run exactly as if trained alone ------------------------------

TIMED = {"wall_time", "fit_time", "tokens_per_s", "group_size"}


def assert_same_run(alone, grouped):
    """Same curve numbers (all but wall-clock), parameters, checkpoints and record."""
    pd.testing.assert_frame_equal(pd.read_csv(alone / "curve.csv").drop(columns=NOT_TIMED),
                                  pd.read_csv(grouped / "curve.csv").drop(columns=NOT_TIMED))
    files = sorted(p.name for p in alone.glob("*.npz"))
    assert files == sorted(p.name for p in grouped.glob("*.npz"))
    for name in files:
        with np.load(alone / name) as a, np.load(grouped / name) as g:
            assert sorted(a) == sorted(g)
            assert all(np.array_equal(a[k], g[k]) for k in a)
    a, g = (json.loads((d / "final.json").read_text()) for d in (alone, grouped))
    assert {k: v for k, v in a.items() if k not in TIMED} == {k: v for k, v in g.items() if k not in TIMED}


GROUP_SHAPES = {
    "linear": dict(task="recall", cell="linear", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=4),
    "tanh": dict(task="recall", cell="tanh", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=4),
    "gru": dict(task="timemachine", cell="gru", hidden=8, seq_len=10, batch_size=4),
    "lstm": dict(task="recall", cell="lstm", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=4),
    "influence": dict(task="influence", seq_len=30),
}


@pytest.mark.parametrize("cell", list(GROUP_SHAPES))
def test_every_run_of_a_group_equals_the_run_alone(tmp_path, cell):
    """Full, regular, windowed and randomized side by side with mixed seeds and learning
    rates, one run diverging on purpose (huge lr, no clipping): each is bit-identical to
    the same run trained alone, and the diverged one is frozen and recorded as such."""
    shared = dict(GROUP_SHAPES[cell], optimizer="sgd", updates=12, eval_every=5, checkpoints=[0, 7])
    runs = [dict(estimator="full", seed=0, lr=0.05), dict(estimator="regular:3", seed=1, lr=0.02),
            dict(estimator="windowed:3", seed=2, lr=0.05, clip=0.1),
            dict(estimator="randomized:power:3", seed=3, lr=0.05),
            dict(estimator="full", seed=4, lr=3e38, clip=0)]
    cfgs = [RunConfig(**shared, **r) for r in runs]
    finals = train_group(cfgs, [tmp_path / "group" / str(i) for i in range(len(cfgs))], quiet=True)
    assert [f["diverged"] for f in finals] == [False] * 4 + [True]
    assert all(f["group_size"] == 5 for f in finals)
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / "alone" / str(i), quiet=True)
        assert_same_run(tmp_path / "alone" / str(i), tmp_path / "group" / str(i))


def test_adam_group_with_mixed_learning_rates_and_estimators(tmp_path):
    shared = dict(GROUP_SHAPES["tanh"], optimizer="adam", updates=15, eval_every=5)
    runs = [dict(estimator="randomized:artbp:3", lr=0.01), dict(estimator="randomized:constant:4", lr=0.003),
            dict(estimator="regular:2", lr=0.03, clip=0.5), dict(estimator="full", lr=0.01, seed=7)]
    cfgs = [RunConfig(**shared, **r) for r in runs]
    train_group(cfgs, [tmp_path / "group" / str(i) for i in range(len(cfgs))], quiet=True)
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / "alone" / str(i), quiet=True)
        assert_same_run(tmp_path / "alone" / str(i), tmp_path / "group" / str(i))


@pytest.mark.parametrize("key,value", [("hidden", 9), ("seq_len", 11), ("updates", 16),
                                       ("optimizer", "sgd"), ("dtype", "float64"), ("lag", 4)])
def test_runs_that_cannot_share_a_group_fail_before_any_output(tmp_path, key, value):
    base = dict(GROUP_SHAPES["tanh"], updates=15)
    cfgs = [RunConfig(**base), RunConfig(**{**base, key: value})]
    with pytest.raises(ValueError, match="must share"):
        train_group(cfgs, [tmp_path / "a", tmp_path / "b"], quiet=True)
    assert not list(tmp_path.iterdir())


def test_unwritable_output_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    cfgs = [RunConfig(**GROUP_SHAPES["tanh"], updates=10 ** 6, seed=s) for s in (0, 1)]  # hours if trained
    with pytest.raises(ValueError, match="is not a folder"):
        train_group(cfgs, [tmp_path / "ok", tmp_path / "file" / "run"], quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_train_command_trains_a_group_into_the_folders_of_its_runs(tmp_path, capsys):
    from bptt.study.cli import main

    shape = ["--task", "recall", "--lag", "3", "--alphabet", "4", "--hidden", "8", "--seq-len", "10",
             "--batch-size", "4", "--updates", "10", "--eval-every", "5", "--quiet"]
    outs = [str(tmp_path / "group" / f"seed~{s}") for s in range(3)]
    assert main(["train", *shape, "--estimator", "regular:3", "--seed", "0", "1", "2",
                 "--lr", "0.01", "0.02", "0.01", "--out", *outs]) == 0
    for s in range(3):
        assert main(["train", *shape, "--estimator", "regular:3", "--seed", str(s), "--lr",
                     ["0.01", "0.02", "0.01"][s], "--out", str(tmp_path / "alone" / str(s))]) == 0
        assert_same_run(tmp_path / "alone" / str(s), tmp_path / "group" / f"seed~{s}")
    capsys.readouterr()
    assert main(["train", *shape, "--seed", "0", "1", "--out", *outs]) == 2
    assert "--seed has 2 values for 3 --out folders" in capsys.readouterr().err
