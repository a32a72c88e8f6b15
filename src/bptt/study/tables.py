"""Tidy tables from the run folders: runs, curves, per-cell summaries, gradient stats.

Every table is long-form: one row per observation, keys as columns
(task, cell, T, strategy, tau, seed, ...), so that pandas and seaborn group freely.
The estimator's columns (``spec``, ``kind``, ``strategy``, ``tau``, ``schedule``) are
its identity as training and gradstats wrote it (``Estimator.identity``): ``strategy``
is ``full``, ``regular``, ``windowed`` or ``randomized-<schedule>``; ``tau`` is the
truncation length or the schedule's mean segment length (0 for full).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json


# training to convergence, fair tuning and realised costs (see train.py and costs.py)
CONVERGENCE_COLUMNS = (
    "best_val_metric", "best_val_loss", "best_train_eval_loss", "best_update", "test_metric",
    "test_loss", "stop_reason", "converged", "late_improvement", "updates_done", "epochs_done",
    "clip_fraction", "mean_cuts", "mean_peak_stored_steps", "max_peak_stored_steps",
    "mean_backward_steps", "theta", "theta_star",
)


CORPUS_COLUMNS = ("split", "train_characters", "val_characters", "test_characters")


def corpus_blocks(final):
    """The corpus split of a timemachine run and its blocks' sizes in characters (others: NaN)."""
    data = final.get("data") or {}
    if "split" not in data:
        return dict.fromkeys(CORPUS_COLUMNS, np.nan)
    return {k: data[k] for k in CORPUS_COLUMNS}


def load_runs(final_paths):
    """(runs, curves) DataFrames from a list of ``final.json`` paths."""
    runs, curves = [], []
    for path in final_paths:
        path = Path(path)
        final = read_json(path)  # nulls (diverged runs) back to NaN
        cfg = final["config"]
        key = {"task": cfg["task"], "cell": final["cell"], "T": cfg["seq_len"],
               "strategy": final["strategy"], "tau": final["tau"], "lr": cfg["lr"], "seed": cfg["seed"]}
        runs.append({
            **key,
            "schedule": final["schedule"],
            "kind": final["kind"],
            "spec": final["spec"],
            "estimator": final["estimator"],
            "metric_name": final["metric_name"],
            "higher_is_better": final["higher_is_better"],
            "chance": final["chance"],
            "diverged": final["diverged"],
            "final_val_metric": final["final_val_metric"],
            "final_val_loss": final["final_val_loss"],
            "final_train_eval_loss": final["final_train_eval_loss"],
            "generalization_gap": final["final_val_loss"] - final["final_train_eval_loss"],
            "wall_time": final["wall_time"],
            "fit_time": final["fit_time"],
            "tokens_per_s": final["tokens_per_s"],
            "peak_backward_steps": final["peak_backward_steps"],
            **{k: final.get(k, np.nan) for k in CONVERGENCE_COLUMNS},
            "hidden": cfg["hidden"],
            "updates": cfg["updates"],
            "clip": cfg.get("clip", np.nan),  # the threshold (0: no clipping) beside clip_fraction
            # recall's delay (several lags: recall_lags figure); other tasks have none
            "lag": cfg["lag"] if cfg["task"] == "recall" else np.nan,
            # timemachine's corpus split and its blocks' sizes (other tasks: none)
            **corpus_blocks(final),
            "path": str(path.parent),
        })
        curve = pd.read_csv(path.parent / "curve.csv")
        for k, v in key.items():
            curve[k] = v
        curves.append(curve)
    if not runs:
        raise ValueError("no runs given")
    runs = pd.DataFrame(runs).sort_values(["task", "cell", "T", "strategy", "tau", "lr", "seed"])
    curves = pd.concat(curves, ignore_index=True)
    return runs.reset_index(drop=True), curves


ANCHOR_COLUMNS = ("val_perplexity", "d2l_val_perplexity", "val_perplexity_every_offset", "train_perplexity",
                  "d2l_train_perplexity", "test_perplexity", "epochs", "updates", "best_update",
                  "clip_fraction", "converged", "diverged", "wall_time", "tokens_per_s", "source")


def load_anchor(paths):
    """One row per ``anchor.json`` of the d2l anchor (no paths: an empty table)."""
    if len(paths) > 1:
        raise ValueError(f"one anchor.json expected, got {len(paths)}")
    return pd.DataFrame([read_json(p) for p in paths], columns=list(ANCHOR_COLUMNS))


def bootstrap_mean_ci(values, rng, n_boot=2000, level=0.95):
    """Percentile bootstrap interval of the mean of ``values`` (1-D, NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    if len(v) == 1:
        return v[0], v[0], v[0]
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


METRIC_COLUMNS = ("test_metric", "final_val_metric")  # the first present is judged


def metric_column(runs):
    for c in METRIC_COLUMNS:
        if c in runs and runs[c].notna().any():
            return c
    return METRIC_COLUMNS[-1]


def summarize_runs(runs, seed=0):
    """Mean and 95% bootstrap interval per grid point, over seeds, of the metric the
    verdict judges (``metric_column``: the test metric at the best validation checkpoint
    where runs have one); ``metric_column`` names it."""
    rng = np.random.default_rng(seed)
    rows = []
    keys = ["task", "cell", "T", "strategy", "tau"]
    column = metric_column(runs)
    for key, g in runs.groupby(keys, sort=True):
        mean, lo, hi = bootstrap_mean_ci(g[column], rng)
        rows.append({**dict(zip(keys, key)), "metric_name": g["metric_name"].iloc[0],
                     "metric_column": column,
                     "seeds": len(g), "diverged": int(g["diverged"].sum()),
                     "metric_mean": mean, "metric_lo": lo, "metric_hi": hi,
                     "gap_mean": float(g["generalization_gap"].mean()),
                     "wall_time_mean": float(g["wall_time"].mean())})
    return pd.DataFrame(rows)


def load_gradstats(paths):
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("no gradstats tables given")
    df = pd.concat(frames, ignore_index=True)
    df["schedule"] = df["schedule"].fillna("")
    return df


LAGPROFILE_TRAINED_COLUMNS = ["task", "cell", "hidden", "seq_len", "checkpoint", "progress", "seed",
                              "k", "grad_norm", "relative_norm"]


def load_lagprofiles(paths):
    """The trained models' lag profiles (gradstats --lagprofile-out), one table; may be empty."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=LAGPROFILE_TRAINED_COLUMNS)
    return pd.concat(frames, ignore_index=True)
