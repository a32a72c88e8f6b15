"""d2l's three reasons measured along training, each beside the outcome it should explain.

Reasons 1 and 2 are measured by ``gradstats`` on the full-BPTT runs at checkpoints along
training (init, fractions of the budget, the run's result) for several seeds; reason 3
on the trained runs themselves.  ``reasons_training`` puts them beside the verdict:
one row per comparison of the verdict (task, cell, T, τ, schedule) and checkpoint,
with the comparison's ``outcome`` and ``effect``:

1. a few steps capture what matters: ``cosine_regular`` (regular(τ)'s gradient against
   the exact one, mean over seeds) and ``reach_beyond_tau`` (the share of the trained
   model's ‖∂l_T/∂h_{T-k}‖ at lags k >= τ, what regular(τ) drops);
2. variance cancels the gain: ``mse_ratio`` = MSE(randomized) / MSE(regular) for one
   update (W = 1), and ``mse_ratio_window`` for the average of W updates (bias² +
   variance / W: randomized's variance shrinks, regular's bias does not), and
   ``variance_over_sgd_noise`` (randomized's variance against SGD's own minibatch
   noise; NaN, not applicable, on a task without minibatch noise);
3. truncation regularizes: ``gap_regular_minus_full`` (held-out minus training loss
   of regular(τ)'s results minus full's, at their best checkpoints, mean over the
   converged runs; negative supports the reason) — only where the task has held-out
   data (``HELD_OUT``), else NaN with a note.

``reasons_outcomes`` summarises that table per (task, checkpoint, outcome): how often
each reason's evidence held among the comparisons of each outcome class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .lagprofile import reach_beyond

HELD_OUT = {
    "timemachine": "",
    "recall": "not applicable: every training sequence is a fresh sample of the generator, "
              "so there is nothing to overfit and no held-out gap",
    "influence": "not applicable: one deterministic sequence, the same for training, "
                 "validation and test",
}
"""Per task: "" where a train/held-out gap can speak for reason 3, else why not."""

NO_NOISE = 1e-12
"""SGD's relative minibatch variance at or below this is round-off: the task has no noise."""

KEYS = ["task", "cell", "T", "tau", "schedule"]
COLUMNS = KEYS + ["checkpoint", "progress", "seeds", "outcome", "effect", "cosine_regular",
                  "reach_beyond_tau", "mse_regular", "mse_randomized", "mse_ratio", "window",
                  "mse_ratio_window", "variance_over_sgd_noise", "gap_regular_minus_full",
                  "reason3_runs", "reason3_note"]


def _ratio(a, b):
    return a / b if b > 0 else np.nan


def gradient_reasons(gradstats, lagprofile_trained):
    """Reasons 1 and 2 per (task, cell, T, τ, schedule, checkpoint), means over seeds."""
    gs = gradstats.rename(columns={"seq_len": "T"})
    gs["schedule"] = gs["schedule"].fillna("")
    ck = ["task", "cell", "T", "checkpoint"]
    rows = []
    for key, g in gs.groupby(ck + ["tau"], sort=False):
        reg = g[g["kind"] == "regular"]
        if reg.empty:
            continue
        per_seed = reg.set_index("seed")
        for schedule, rnd in g[g["kind"] == "randomized"].groupby("schedule"):
            rnd = rnd.set_index("seed")
            seeds = per_seed.index.intersection(rnd.index)
            r, q = rnd.loc[seeds], per_seed.loc[seeds]
            noise = r["sgd_relative_variance"].to_numpy()
            rows.append({
                **dict(zip(ck + ["tau"], key)), "schedule": schedule,
                "progress": float(g["progress"].iloc[0]) if "progress" in g else np.nan,
                "seeds": len(seeds),
                "cosine_regular": float(q["cosine_mean"].mean()),
                "mse_regular": float(q["relative_mse"].mean()),
                "mse_randomized": float(r["relative_mse"].mean()),
                "mse_ratio": _ratio(float(r["relative_mse"].mean()), float(q["relative_mse"].mean())),
                "window": int(r["window"].iloc[0]),
                "mse_ratio_window": _ratio(float(r["relative_mse_window"].mean()),
                                           float(q["relative_mse_window"].mean())),
                "variance_over_sgd_noise": (float(np.mean(r["relative_variance"].to_numpy() / noise))
                                            if (noise > NO_NOISE).all() else np.nan),
            })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["reach_beyond_tau"] = [_reach(lagprofile_trained, r) for r in out.itertuples()]
    return out


def _reach(profiles, row):
    """Mean over seeds of the share of the lag profile at k >= τ (NaN if not measured)."""
    if profiles is None or profiles.empty:
        return np.nan
    p = profiles[(profiles["task"] == row.task) & (profiles["cell"] == row.cell)
                 & (profiles["seq_len"] == row.T) & (profiles["checkpoint"] == row.checkpoint)]
    shares = [reach_beyond(g.sort_values("k"), int(row.tau)) for _, g in p.groupby("seed")]
    return float(np.nanmean(shares)) if shares and np.isfinite(shares).any() else np.nan


def _heldout_gap(runs):
    """Held-out minus training loss of each run's result (its best checkpoint if recorded)."""
    if {"best_val_loss", "best_train_eval_loss"} <= set(runs):
        return runs["best_val_loss"] - runs["best_train_eval_loss"]
    return runs["generalization_gap"]


def regularization(runs):
    """Reason 3 per (task, cell, T, τ): gap(regular) - gap(full), where it can speak.

    Only converged runs count (where runs record ``converged``): a gap of a model still
    learning says little about regularization. ``reason3_runs`` is how many were used.
    """
    runs = runs.assign(_gap=_heldout_gap(runs))
    ok = ~runs["diverged"].astype(bool)
    if "converged" in runs:
        ok &= runs["converged"].astype(bool)
    rows = []
    for (task, cell, T), g in runs.groupby(["task", "cell", "T"]):
        note = HELD_OUT.get(task, "not applicable: the task has no held-out split")
        full = g[(g["strategy"] == "full") & ok[g.index]]
        for tau, reg in g[g["strategy"] == "regular"].groupby("tau"):
            reg = reg[ok[reg.index]]
            value = np.nan
            why = note
            if not note:
                if len(full) and len(reg):
                    value = float(reg["_gap"].mean() - full["_gap"].mean())
                else:
                    why = "no converged run of regular or of full"
            rows.append({"task": task, "cell": cell, "T": T, "tau": tau,
                         "gap_regular_minus_full": value,
                         "reason3_runs": 0 if note else len(full) + len(reg),
                         "reason3_note": why})
    return pd.DataFrame(rows, columns=["task", "cell", "T", "tau", "gap_regular_minus_full",
                                       "reason3_runs", "reason3_note"])


def reasons_training(gradstats, lagprofile_trained, runs, verdict):
    """The table of the module doc: every comparison × checkpoint, reasons beside outcome."""
    v = verdict[KEYS + ["outcome", "effect"]].copy()
    v["schedule"] = v["schedule"].fillna("")
    grad = gradient_reasons(gradstats, lagprofile_trained)
    if grad.empty:
        out = v.assign(checkpoint="", progress=np.nan)
    else:
        out = v.merge(grad, on=KEYS, how="left")
    out = out.merge(regularization(runs), on=["task", "cell", "T", "tau"], how="left")
    return out.reindex(columns=COLUMNS).sort_values(KEYS + ["progress"]).reset_index(drop=True)


def reasons_outcomes(table, cosine_support=0.9):
    """Per (task, checkpoint, outcome): how often each reason's evidence held.

    ``cosine_ge_support``: regular(τ)'s cosine >= ``cosine_support`` (reason 1);
    ``mse_ratio_gt_1`` / ``mse_ratio_window_gt_1``: randomized's MSE above regular's for
    one update / averaged over W updates (reason 2); ``gap_smaller``: regular's
    held-out gap below full's (reason 3, counted over ``gap_measured``).
    """
    rows = []
    t = table[table["checkpoint"].notna() & (table["checkpoint"] != "")]
    for (task, checkpoint, outcome), g in t.groupby(["task", "checkpoint", "outcome"], sort=True):
        gap = g["gap_regular_minus_full"]
        rows.append({
            "task": task, "checkpoint": checkpoint, "progress": float(g["progress"].iloc[0]),
            "outcome": outcome, "comparisons": len(g),
            "cosine_median": float(g["cosine_regular"].median()),
            "cosine_ge_support": int((g["cosine_regular"] >= cosine_support).sum()),
            "reach_beyond_tau_median": float(g["reach_beyond_tau"].median()),
            "mse_ratio_median": float(g["mse_ratio"].median()),
            "mse_ratio_gt_1": int((g["mse_ratio"] > 1).sum()),
            "window": int(g["window"].iloc[0]) if g["window"].notna().any() else np.nan,
            "mse_ratio_window_median": float(g["mse_ratio_window"].median()),
            "mse_ratio_window_gt_1": int((g["mse_ratio_window"] > 1).sum()),
            "both_1_and_2": int(((g["cosine_regular"] >= cosine_support) & (g["mse_ratio"] > 1)).sum()),
            "gap_measured": int(gap.notna().sum()),
            "gap_smaller": int((gap < 0).sum()),
        })
    out = pd.DataFrame(rows)
    if not out.empty:
        out = out.sort_values(["task", "progress", "outcome"]).reset_index(drop=True)
    return out
