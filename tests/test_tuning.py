"""Learning-rate selection on validation, per grid point."""

import numpy as np
import pandas as pd
import pytest

from bptt.study.tuning import select_learning_rates


def runs_table(values, task="timemachine", higher=False, strategy="regular"):
    """values: {lr: [val metric per seed]} -> runs rows of one grid point."""
    rows = []
    for lr, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"task": task, "cell": "tanh", "T": 32, "strategy": strategy, "tau": 8, "lr": lr,
                         "seed": seed, "higher_is_better": higher, "best_val_metric": v,
                         "test_metric": 100 * lr + seed})
    return pd.DataFrame(rows)


def test_best_mean_validation_rate_is_chosen_per_grid_point():
    runs = pd.concat([
        runs_table({0.001: [9, 9, 9], 0.01: [7, 8, 6], 0.1: [7, 7, 8]}),  # means 9, 7, 7.33
        runs_table({0.001: [0.5, 0.6, 0.5], 0.01: [0.9, 0.9, 0.8], 0.1: [0.95, 0.97, 0.99]},
                   task="recall", higher=True),  # accuracy: the largest mean wins, at the grid's edge
        runs_table({0.001: [5, 5, 5], 0.01: [4, 6, 5]}, strategy="randomized-power"),  # tie: smaller lr
    ], ignore_index=True)
    selected, choices = select_learning_rates(runs)
    picked = selected.groupby(["task", "strategy"])["lr"].unique().apply(list).to_dict()
    assert picked == {("timemachine", "regular"): [0.01], ("recall", "regular"): [0.1],
                      ("timemachine", "randomized-power"): [0.001]}
    assert len(selected) == 9 and set(selected["seed"]) == {0, 1, 2}
    row = choices.set_index(["task", "strategy", "lr"])
    assert row.loc[("timemachine", "regular", 0.01), "val_metric_mean"] == pytest.approx(7.0)
    assert row.loc[("recall", "regular", 0.1), "at_grid_edge"]
    assert not row.loc[("timemachine", "regular", 0.01), "at_grid_edge"]
    assert choices["chosen"].sum() == 3 and (choices["seeds"] == 3).all()


def test_a_rate_where_a_seed_has_no_finite_metric_is_not_chosen():
    # lr 0.1 is best on the seeds that have a metric, but seed 2 has none
    runs = runs_table({0.01: [7.0, 7.2, 7.1], 0.1: [6.0, 6.1, np.nan]})
    selected, choices = select_learning_rates(runs)
    assert set(selected["lr"]) == {0.01}
    assert choices.set_index("lr").loc[0.1, "val_metric_mean"] == np.inf


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks the columns \['lr'\]"):
        select_learning_rates(runs_table({0.01: [1.0]}).drop(columns="lr"))
