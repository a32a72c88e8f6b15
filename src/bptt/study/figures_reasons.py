"""Figures of d2l's reasons along training and of recall at several lags.

Each takes the loaded tables (``figures.load_tables``) and returns a matplotlib Figure;
``bptt.study.figures`` lists them under their names (``bptt.study.names.FIGURES``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

OUTCOME_STYLE = {  # colour and marker of each verdict class
    "better": ("#0072B2", "^"),
    "equivalent": ("#009E73", "o"),
    "worse": ("#D55E00", "v"),
    "inconclusive": ("#999999", "x"),
}


def _empty(message):
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def _checkpoint_order(frame):
    """Checkpoint labels ordered by training progress."""
    p = frame.groupby("checkpoint")["progress"].first().sort_values()
    return list(p.index)


def reasons_training(t):
    """Reasons 1 and 2 against training progress, one row of panels per task."""
    r = t.get("reasons_training")
    if r is None or r["cosine_regular"].notna().sum() == 0:
        return _empty("no gradient statistics along training")
    r = r[r["cosine_regular"].notna()].copy()
    tasks = sorted(r.task.unique())
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 3.1 * len(tasks)), squeeze=False)
    W = int(r["window"].dropna().iloc[0])
    for row, task in zip(axes, tasks):
        g = r[r.task == task]
        # reason 1 does not depend on the schedule: one value per (cell, T, τ, checkpoint)
        one = g.drop_duplicates(["cell", "T", "tau", "checkpoint"])
        sns.lineplot(data=one, x="progress", y="cosine_regular", hue="tau", marker="o",
                     errorbar=None, palette="viridis", ax=row[0])
        row[0].set(ylabel="cosine(regular(τ), exact)", title=f"{task}: reason 1, direction")
        sns.lineplot(data=one, x="progress", y="reach_beyond_tau", hue="tau", marker="o",
                     errorbar=None, palette="viridis", ax=row[1], legend=False)
        row[1].set(ylabel="share of ‖∂l_T/∂h_{T-k}‖ at k ≥ τ", title=f"{task}: reason 1, reach")
        long = g.melt(id_vars=["tau", "progress"], value_vars=["mse_ratio", "mse_ratio_window"],
                      var_name="updates", value_name="ratio")
        long["updates"] = long["updates"].map({"mse_ratio": "W = 1", "mse_ratio_window": f"W = {W}"})
        sns.lineplot(data=long, x="progress", y="ratio", hue="tau", style="updates", marker="o",
                     errorbar=None, palette="viridis", ax=row[2])
        row[2].axhline(1, color="black", lw=0.8, ls=":")
        if (long["ratio"] > 0).any():
            row[2].set_yscale("log")
        row[2].set(ylabel="MSE(randomized) / MSE(regular)", title=f"{task}: reason 2")
        for ax in row:
            ax.set_xlabel("training progress (0: init, 1: result)")
    fig.suptitle("d2l's reasons 1 and 2 along the training of the full-BPTT runs "
                 "(mean over cells, T, schedules and seeds)")
    fig.tight_layout()
    return fig


def lagprofile_trained(t):
    """How far back the full-BPTT runs' gradients reach, at each checkpoint."""
    p = t.get("lagprofile_trained")
    if p is None or p.empty:
        return _empty("no lag profiles of trained models")
    p = p[p["relative_norm"] > 0].copy()
    # the longest T of each task shows the most lags
    p = p[p["seq_len"] == p.groupby("task")["seq_len"].transform("max")]
    order = _checkpoint_order(p)
    g = sns.relplot(data=p, x="k", y="relative_norm", hue="checkpoint", hue_order=order,
                    col="task", style="cell", kind="line", errorbar=None, palette="rocket_r",
                    height=3, aspect=1.2, facet_kws={"sharey": False, "sharex": False})
    g.set(yscale="log")
    g.set_axis_labels("lag k (steps back)", "‖∂l_T/∂h_{T-k}‖ / ‖∂l_T/∂h_T‖")
    for task, ax in g.axes_dict.items():
        ax.set_title(f"{task} (T = {int(p[p.task == task]['seq_len'].iloc[0])})")
    g.figure.suptitle("How far back the gradients of the full-BPTT runs reach, along training "
                      "(mean over seeds)", y=1.03)
    return g.figure


def reasons_outcome(t):
    """Each comparison at the end of training: reason 1 against reason 2, by outcome."""
    r = t.get("reasons_training")
    if r is None or r["cosine_regular"].notna().sum() == 0:
        return _empty("no gradient statistics along training")
    last = r[r["cosine_regular"].notna()]
    last = last[last["progress"] == last.groupby("task")["progress"].transform("max")]
    tasks = sorted(last.task.unique())
    W = int(last["window"].dropna().iloc[0])
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False)
    for col, task in enumerate(tasks):
        g = last[last.task == task]
        for row, (ycol, label) in enumerate((("mse_ratio", "W = 1"), ("mse_ratio_window", f"W = {W}"))):
            ax = axes[row][col]
            for outcome, (color, marker) in OUTCOME_STYLE.items():
                s = g[g.outcome == outcome]
                if len(s):
                    ax.scatter(s["cosine_regular"], s[ycol], c=color, marker=marker, s=28,
                               label=f"{outcome} ({len(s)})", alpha=0.8)
            ax.axhline(1, color="black", lw=0.8, ls=":")
            if (g[ycol] > 0).all():
                ax.set_yscale("log")
            ax.set(xlabel="cosine(regular(τ), exact) — reason 1",
                   ylabel=f"MSE(rand.)/MSE(reg.), {label}", title=f"{task}, {label}")
            ax.legend(fontsize=7, title="randomized was", title_fontsize=7)
    fig.suptitle("Each comparison at the end of training: where reasons 1 and 2 held, and its outcome")
    fig.tight_layout()
    return fig


def recall_lags(t):
    """Recall at several lags: the verdict's effect against τ / lag."""
    v = t.get("verdict")
    runs = t.get("runs")
    if v is None or runs is None or "lag" not in runs:
        return _empty("no recall runs")
    lags = runs[runs.task.str.startswith("recall")][["task", "lag"]].drop_duplicates()
    v = v.merge(lags, on="task")
    if v.empty:
        return _empty("no recall comparisons")
    v = v.assign(ratio=v["tau"] / v["lag"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for outcome, (color, marker) in OUTCOME_STYLE.items():
        s = v[v.outcome == outcome]
        if len(s):
            ax.errorbar(s["ratio"], s["effect"], yerr=[s["effect"] - s["effect_lo"],
                                                       s["effect_hi"] - s["effect"]],
                        fmt=marker, color=color, ms=6, lw=0.8, alpha=0.85,
                        label=f"{outcome} ({len(s)})")
    for lag, s in v.groupby("lag"):
        m = s.groupby("ratio")["effect"].mean()
        ax.plot(m.index, m.values, lw=0.8, alpha=0.6, label=f"lag {lag:g}: mean")
    ax.axvline(1, color="black", lw=0.8, ls="--")
    ax.axhline(0, color="black", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="τ / lag (τ: regular's truncation = randomized's mean segment length)",
           ylabel="effect: accuracy(randomized) − accuracy(regular)",
           title="Recall at several lags: randomized against regular truncation")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
