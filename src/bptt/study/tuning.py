"""Fair tuning: every strategy at its own best learning rate, chosen on validation.

Each grid point (task, cell, T, strategy, τ — the schedule is part of the strategy)
is trained at every learning rate of its task's grid with the same seeds.  The rate
whose runs have the best mean validation metric (at their best checkpoint) is that
grid point's rate; the comparison then uses the *test* metric of those runs, so the
choice and the judgement use disjoint data (for influence, the one sequence is every
split: there is nothing held out, which the report says).

A run that diverged keeps the validation metric of its best checkpoint before it
diverged (what early stopping with checkpoints gives a practitioner); a rate at which
some seed has no finite validation metric at all is never chosen (unless every rate
is in that state).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID_KEYS = ["task", "cell", "T", "strategy", "tau"]


def _scores(runs, metric):
    """Validation scores oriented so that lower is better; NaN (no finite metric) is +inf."""
    sign = np.where(runs["higher_is_better"].astype(bool), -1.0, 1.0)
    return (sign * runs[metric].astype(float)).fillna(np.inf)


def select_learning_rates(runs, metric="best_val_metric"):
    """(selected runs, choices).

    ``runs``: one row per run with GRID_KEYS, ``lr``, ``seed``, ``higher_is_better`` and
    ``metric``.  ``selected``: the rows of the chosen rate of every grid point (all its
    seeds).  ``choices``: one row per (grid point, lr) with the mean validation score
    over seeds, the number of seeds, whether the rate was chosen, and whether the chosen
    rate lies at an edge of the grid (then the grid may be too narrow).
    """
    missing = [c for c in GRID_KEYS + ["lr", "seed", "higher_is_better", metric] if c not in runs]
    if missing:
        raise ValueError(f"runs table lacks the columns {missing}")
    runs = runs.copy()
    runs["_score"] = _scores(runs, metric)
    table = (runs.groupby(GRID_KEYS + ["lr"], sort=True)
             .agg(val_score=("_score", "mean"), seeds=("seed", "nunique"),
                  higher_is_better=("higher_is_better", "first"))
             .reset_index())
    sign = np.where(table["higher_is_better"].astype(bool), -1.0, 1.0)
    table["val_metric_mean"] = sign * table["val_score"]
    # lowest score wins; among equal scores, the smallest rate (sorted first)
    best = table.loc[table.groupby(GRID_KEYS, sort=True)["val_score"].idxmin()]
    chosen = best.set_index(GRID_KEYS)["lr"]
    key = pd.MultiIndex.from_frame(table[GRID_KEYS])
    table["chosen"] = table["lr"].to_numpy() == chosen.reindex(key).to_numpy()
    lrs = table.groupby(GRID_KEYS)["lr"]
    table["at_grid_edge"] = table["chosen"] & (
        ((table["lr"] == lrs.transform("min")) | (table["lr"] == lrs.transform("max")))
        & (lrs.transform("nunique") > 1))
    table = table.drop(columns=["val_score", "higher_is_better"])
    run_key = pd.MultiIndex.from_frame(runs[GRID_KEYS])
    selected = runs[runs["lr"].to_numpy() == chosen.reindex(run_key).to_numpy()]
    return selected.drop(columns="_score").reset_index(drop=True), table.reset_index(drop=True)

