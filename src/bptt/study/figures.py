"""Figures of the study (seaborn on the tidy tables), each written as SVG and PNG.

Each function takes the loaded tables and returns a matplotlib Figure; ``FIGURES``
maps the file stem to the function, in the order of the report.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .data import VOCAB, load_timemachine  # noqa: E402
from ..engine.estimators import make_estimator, strategy_name  # noqa: E402
from . import names  # noqa: E402
from .io import atomic_path  # noqa: E402
from ..engine.schedules import SCHEDULES  # noqa: E402
from .verdict import NO_NOISE  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")
FAMILY_ORDER = [strategy_name(k) for k in ("full", "regular", "windowed")] + [
    strategy_name("randomized", s) for s in SCHEDULES]


def _palette(names):
    base = sns.color_palette("colorblind", len(FAMILY_ORDER))
    colors = dict(zip(FAMILY_ORDER, base))
    return {n: colors.get(n, "gray") for n in names}


def _order(names):
    names = set(names)
    return [n for n in FAMILY_ORDER if n in names]


def _middle(values):
    v = sorted(set(values))
    return v[len(v) // 2]


def _empty(message):
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def _note(ax, message):
    """Say in the panel why it has nothing to show (e.g. every run diverged)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True,
            fontsize=9, color="dimgray")


def _log_scale(axes, axis):
    """Log scale on the panels that have positive data; the others stay linear.

    matplotlib refuses a log axis whose data are all <= 0 or NaN (a diverged task).
    """
    for ax in np.ravel(axes):
        lim = ax.dataLim
        hi = lim.x1 if axis == "x" else lim.y1
        if np.isfinite(hi) and hi > 0:
            (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def segmentation(t):
    """The chapter's figure: where each strategy cuts the opening of The Time Machine."""
    tau = int(_middle(t["runs"]["tau"][t["runs"]["tau"] > 0])) if "runs" in t else 8
    text = "".join(VOCAB[i] for i in load_timemachine()[:80])
    T = len(text)
    rows = [("full", np.r_[True, np.zeros(T - 1, bool)]),
            (make_estimator("regular", tau).label, (np.arange(T) % tau) == 0)]
    rng = np.random.default_rng(0)
    for name in SCHEDULES:
        est = make_estimator("randomized", tau, name)
        rows.append((est.label, est.schedule.sample_cuts(T, rng)))
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(rows) + 0.8))
    colors = sns.color_palette("pastel", 2)
    for i, (label, cuts) in enumerate(rows):
        seg = np.cumsum(cuts) - 1
        for x, ch in enumerate(text):
            ax.add_patch(plt.Rectangle((x, -i - 0.4), 1, 0.8, color=colors[seg[x] % 2], lw=0))
            ax.text(x + 0.5, -i, ch if ch != " " else "·", ha="center", va="center", fontsize=7,
                    family="monospace")
        for x in np.flatnonzero(cuts)[1:]:
            ax.plot([x, x], [-i - 0.45, -i + 0.45], color="black", lw=1.2)
    ax.set_yticks([-i for i in range(len(rows))], [r[0] for r in rows])
    ax.set_xlim(0, T)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_xticks([])
    ax.grid(False)
    ax.set_title(f"Segments of the first {T} characters (mean segment length {tau}; | = cut)")
    fig.tight_layout()
    return fig


def lagprofile(t):
    df = t["lagprofile"]
    g = sns.relplot(data=df, x="k", y="relative_norm", hue="rho", col="cell", kind="line",
                    palette="viridis", errorbar=None, height=3.2, aspect=1.3,
                    facet_kws={"sharey": False})
    _log_scale(g.axes, "y")
    g.set(xlabel="lag k (steps back)", ylabel="‖∂l_T/∂h_{T-k}‖ / ‖∂l_T/∂h_T‖")
    g.figure.suptitle("Gradient carried k steps back, by spectral radius ρ of W_hh", y=1.03)
    return g.figure


def _gs(t, checkpoint=None):
    gs = t["gradstats"]
    gs = gs[gs["strategy"] != "full"]
    return gs if checkpoint is None else gs[gs["checkpoint"] == checkpoint]


def _tau_axes(g, frame):
    """Plain tick labels at the τ values of each task's panels; short titles."""
    for key, ax in g.axes_dict.items():
        task = key[1] if isinstance(key, tuple) else key
        taus = sorted(frame[frame.task == task]["tau"].unique())
        ax.set_xticks(taus, [f"{x:g}" for x in taus])
        ax.minorticks_off()
    g.set_titles("{row_name} | {col_name}")


def bias(t):
    gs = _gs(t)
    g = sns.relplot(data=gs, x="tau", y="relative_bias", hue="strategy", hue_order=_order(gs.strategy),
                    palette=_palette(gs.strategy), col="task", row="checkpoint", kind="line",
                    marker="o", errorbar=None, height=2.8, aspect=1.2,
                    facet_kws={"sharey": False, "sharex": False})
    _log_scale(g.axes, "x")
    g.set(xlabel="τ or mean segment length", ylabel="relative bias ‖E ĝ − g‖/‖g‖")
    _tau_axes(g, gs)
    g.figure.suptitle("Bias of each estimator (mean over cells and T)", y=1.02)
    return g.figure


def variance(t):
    gs = _gs(t)
    long = gs.melt(id_vars=["task", "checkpoint", "kind", "strategy", "tau", "sgd_relative_variance"],
                   value_vars=["relative_variance", "relative_mse"], var_name="quantity")
    long = long[(long.quantity == "relative_mse") | (long.kind == "randomized")]
    g = sns.relplot(data=long, x="tau", y="value", hue="strategy", style="quantity",
                    hue_order=_order(long.strategy), palette=_palette(long.strategy), col="task",
                    row="checkpoint", kind="line", marker="o", errorbar=None, height=2.8,
                    aspect=1.2, facet_kws={"sharey": False, "sharex": False})
    for (row, col), ax in g.axes_dict.items():
        noise = gs[(gs.checkpoint == row) & (gs.task == col)]["sgd_relative_variance"].mean()
        if noise > NO_NOISE:
            ax.axhline(noise, color="black", ls=":", lw=1.2, label="SGD minibatch noise")
        else:  # a deterministic task: its rounding-level "noise" would squash the panel
            ax.text(0.02, 0.02, "no SGD noise line: no minibatch noise on this task",
                    transform=ax.transAxes, fontsize=7, color="dimgray")
    _log_scale(g.axes, "x")
    _log_scale(g.axes, "y")
    g.set(xlabel="τ or mean segment length", ylabel="relative to ‖g‖²")
    _tau_axes(g, gs)
    g.figure.suptitle("Variance and MSE = bias² + variance; dotted: SGD's own minibatch variance",
                      y=1.02)
    return g.figure


def cosine(t):
    gs = _gs(t, "final")
    if gs.empty:
        gs = _gs(t)
    if gs.empty:
        return _empty("no gradient statistics of truncated estimators in this study")
    order = _order(gs.strategy)
    fig, axes = plt.subplots(1, gs.task.nunique(), figsize=(4 * gs.task.nunique(), 3.4),
                             squeeze=False, sharey=True)
    pal = _palette(order)
    for ax, (task, g) in zip(axes[0], gs.groupby("task")):
        agg = g.groupby("strategy")[["cosine_q05", "cosine_q25", "cosine_q50", "cosine_q75",
                                     "cosine_q95"]].mean().reindex([o for o in order if o in set(g.strategy)])
        for i, (name, r) in enumerate(agg.iterrows()):
            ax.plot([i, i], [r.cosine_q05, r.cosine_q95], color=pal[name], lw=1)
            ax.add_patch(plt.Rectangle((i - 0.3, r.cosine_q25), 0.6, r.cosine_q75 - r.cosine_q25,
                                       color=pal[name], alpha=0.6))
            ax.plot([i - 0.3, i + 0.3], [r.cosine_q50] * 2, color="black", lw=1.5)
        ax.set_xticks(range(len(agg)), agg.index, rotation=45, ha="right")
        if not np.isfinite(agg.to_numpy(dtype=float)).any():
            ax.text(0.5, 0.5, "no finite cosine: a gradient (exact or\nestimated) is zero at these parameters",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8, color="dimgray")
        ax.set_title(task)
        ax.set_xlim(-0.6, len(agg) - 0.4)
    axes[0][0].set_ylabel("cosine(ĝ, g): 5-25-50-75-95%")
    fig.suptitle("Cosine similarity of the estimates with the exact gradient (trained parameters)")
    fig.tight_layout()
    return fig


def curves(t):
    c = t["curves"].copy()
    runs = t["runs"]
    pick = []
    for task, r in runs.groupby("task"):
        T = _middle(r["T"])
        tau = _middle(r[(r["T"] == T) & (r["tau"] > 0)]["tau"])
        cell = sorted(r.cell.unique())[0]
        pick.append((task, cell, T, tau))
    keep = np.zeros(len(c), bool)
    for task, cell, T, tau in pick:
        keep |= ((c.task == task) & (c.cell == cell) & (c["T"] == T)
                 & ((c.tau == tau) | (c.strategy == "full"))).to_numpy()
    c = c[keep]
    long = c.melt(id_vars=["task", "strategy", "seed", "update"],
                  value_vars=["train_eval_loss", "val_loss"], var_name="split", value_name="loss")
    g = sns.relplot(data=long, x="update", y="loss", hue="strategy", style="split",
                    hue_order=_order(long.strategy), palette=_palette(long.strategy), col="task",
                    kind="line", errorbar=("pi", 100), height=3, aspect=1.2,
                    facet_kws={"sharey": False})
    titles = {task: f"{task} ({cell}, T={T}, τ={tau:g})" for task, cell, T, tau in pick}
    for task, ax in g.axes_dict.items():
        ax.set_title(titles[task])
    g.figure.suptitle("Loss curves; band: range over seeds", y=1.03)
    return g.figure


def final_metric(t):
    s = t["summary"]
    full = s[s.strategy == "full"]
    s = s[s.strategy != "full"]
    panels = sorted({(task, cell) for task, cell in zip(s.task, s.cell)})
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3 * nrows), squeeze=False)
    pal = _palette(s.strategy)
    handles = {}
    for ax, (task, cell) in zip(axes.flat, panels):
        sub = s[(s.task == task) & (s.cell == cell)]
        T = _middle(sub["T"])
        sub = sub[sub["T"] == T]
        for k, name in enumerate(_order(sub.strategy)):
            g = sub[sub.strategy == name]
            x = g["tau"] * (1 + 0.04 * (k - 2))
            h = ax.errorbar(x, g.metric_mean, yerr=[g.metric_mean - g.metric_lo, g.metric_hi - g.metric_mean],
                            marker="o", ms=3, capsize=2, color=pal[name], label=name)
            handles[name] = h
        f = full[(full.task == task) & (full.cell == cell) & (full["T"] == T)]
        if len(f) and np.isfinite(f.metric_mean.iloc[0]):
            handles["full"] = ax.axhline(f.metric_mean.iloc[0], color="black", ls="--", lw=1, label="full")
        both = pd.concat([sub, f])
        if np.isfinite(both.metric_mean).any():
            _log_scale(ax, "x")
            taus = sorted(sub["tau"].unique())
            ax.set_xticks(taus, [f"{x:g}" for x in taus])
            ax.minorticks_off()
        else:
            _note(ax, f"no final metric: all {int(both.seeds.sum())} runs diverged")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"{task}, {cell}, T={T}")
        ax.set_xlabel("τ")
        ax.set_ylabel(sub.metric_name.iloc[0])
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=max(1, len(handles)),
               bbox_to_anchor=(0.5, 1.04))
    judged = s["metric_column"].iloc[0] if "metric_column" in s and len(s) else "final_val_metric"
    what = {"test_metric": "Test metric at the best validation checkpoint (what the verdict compares)",
            "final_val_metric": "Final validation metric"}.get(judged, judged)
    fig.suptitle(f"{what}, mean and 95% bootstrap interval over seeds", y=1.09)
    fig.tight_layout()
    return fig


def verdict_heatmap(t):
    v = t["verdict"]
    tasks = sorted(v.task.unique())
    scheds = [s for s in SCHEDULES if s in set(v.schedule)]
    fig, axes = plt.subplots(len(tasks), len(scheds), figsize=(3.2 * len(scheds), 2.6 * len(tasks)),
                             squeeze=False)
    mark = {"better": "+", "equivalent": "=", "worse": "−", "inconclusive": "?", "mixed": "~"}
    for i, task in enumerate(tasks):
        sub = v[v.task == task]
        effects = np.abs(sub.relative_effect.to_numpy(dtype=float))
        lim = np.nanmax(effects) if np.isfinite(effects).any() and np.nanmax(effects) > 0 else 1.0
        for j, sched in enumerate(scheds):
            ax = axes[i][j]
            g = sub[sub.schedule == sched].groupby(["T", "tau"]).agg(
                effect=("relative_effect", "mean"),
                outcome=("outcome", lambda o: o.iloc[0] if (o == o.iloc[0]).all() else "mixed"))
            grid = g["effect"].unstack("tau")
            ann = g["outcome"].map(mark).unstack("tau").reindex_like(grid)
            sns.heatmap(grid, ax=ax, cmap="RdBu", vmin=-lim, vmax=lim, annot=ann, fmt="",
                        annot_kws={"fontsize": 13, "fontweight": "bold"},
                        cbar=j == len(scheds) - 1, cbar_kws={"label": "relative effect"})
            ax.set_title(f"{task}: {sched}")
            ax.set_xlabel("τ")
            ax.set_ylabel("T")
    fig.suptitle("Randomized vs regular, relative effect (positive: randomized better; mean over "
                 "cells). + better, = equivalent, − worse, ? inconclusive, ~ mixed over cells",
                 y=1.02)
    fig.tight_layout()
    return fig


def realised_costs(t):
    """Each randomized schedule's realised cuts and peak memory as a ratio to regular(τ)'s."""
    from .audit import MATCH_TOLERANCE

    c = t.get("costs")
    if c is None or c.empty:
        return _empty("no realised costs recorded")
    c = c[c["strategy"] != "regular"].copy()
    c["tau/T"] = c["tau"] / c["T"]
    measures = [(col, label) for col, label in (("cuts_ratio", "cuts per sequence"),
                                                ("peak_ratio", "largest peak of stored steps"))
                if c[col].notna().any()]
    tasks = sorted(c["task"].unique())
    if not measures or not tasks:
        return _empty("no realised costs recorded")
    fig, axes = plt.subplots(len(measures), len(tasks), figsize=(3.6 * len(tasks), 2.8 * len(measures)),
                             squeeze=False)
    pal = _palette(c["strategy"].unique())
    for i, (col, label) in enumerate(measures):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            ax.axhspan(1 - MATCH_TOLERANCE, 1 + MATCH_TOLERANCE, color="0.85", zorder=0)
            ax.axhline(1, color="0.4", lw=0.8)
            sub = c[(c["task"] == task) & c[col].notna()]
            if sub.empty:
                _note(ax, "not recorded")
            for s in _order(sub["strategy"]):
                g = sub[sub["strategy"] == s].sort_values("tau/T")
                ax.plot(g["tau/T"], g[col], "o", color=pal[s], label=s, alpha=0.8)
            ax.set_title(f"{task}: {label}")
            ax.set_xlabel("τ / T")
            ax.set_ylabel("randomized / regular" if j == 0 else "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels))
    fig.suptitle(f"Realised cost of randomized(τ̄ = τ) over regular(τ) (grey band: matched within "
                 f"±{100 * MATCH_TOLERANCE:g}%)", y=1.02)
    fig.tight_layout()
    return fig


def walltime(t):
    r = t["runs"]
    g = sns.catplot(data=r, x="strategy", y="fit_time", col="task", kind="bar",
                    order=_order(r.strategy), palette=_palette(r.strategy), hue="strategy",
                    errorbar=("ci", 95), height=3, aspect=1.3, sharey=False)
    g.set_xticklabels(rotation=45, ha="right")
    g.set(ylabel="training time per run (s)", xlabel="")
    g.figure.suptitle("Wall time of the training loop, mean and 95% interval", y=1.03)
    return g.figure


def bench(t):
    b = t.get("bench")
    if b is None or b.empty:
        return _empty("peer benchmark not run (snakemake bench)")
    b = b[b["tokens_per_s"].notna()].copy()
    b["label"] = b["workload"] + " " + b["config"] + " " + b["cell"]
    g = sns.catplot(data=b, y="label", x="tokens_per_s", hue="implementation", kind="bar",
                    height=0.3 * b["label"].nunique() + 1.5, aspect=2.2)
    _log_scale(g.axes, "x")
    g.set(xlabel="tokens/s (single thread, float32; K samples count K× tokens)", ylabel="")
    g.figure.suptitle("Peer benchmark: bptt against PyTorch", y=1.02)
    return g.figure


from .figures_reasons import (lagprofile_trained, reasons_outcome, reasons_training,  # noqa: E402,F401
                              recall_lags)

# each figure is drawn by the function of its name (bptt.study.names declares the names)
FIGURES = {name: globals()[name] for name in names.FIGURES}
# the appendix figure needs the opt-in peer benchmark
ALL_FIGURES = {**FIGURES, **{name: globals()[name] for name in names.APPENDIX_FIGURES}}


def save(fig, stem):
    """Write ``stem.svg`` and ``stem.png`` atomically."""
    for ext in ("svg", "png"):
        with atomic_path(f"{stem}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight")
    plt.close(fig)


def load_tables(tables_dir):
    from pathlib import Path

    d = Path(tables_dir)
    t = {}
    for name in names.TABLES + names.VERDICT_TABLES + names.REASONS_TABLES + ("bench",):
        p = d / f"{name}.csv"
        if p.exists():
            t[name] = pd.read_csv(p, keep_default_na=True)
    if "gradstats" in t:
        t["gradstats"]["schedule"] = t["gradstats"]["schedule"].fillna("")
    return t
