"""The verdict (docs/design.md §6): randomized(τ̄ = τ) against regular(τ), paired by seed.

For each (task, cell, T, τ) and schedule the two strategies are compared on their
final metric, seed by seed (same initialization, same batches).  The per-seed effect
is oriented so that a positive value means randomized truncation did *better*:

* ``relative`` margin (perplexity, loss): ``log(regular / randomized)`` — for a
  lower-is-better metric, the reverse for a higher-is-better one.  The margin δ
  (e.g. 0.01: "within 1%") becomes ±log(1 + δ) on this scale; for perplexity the
  log ratio is exactly the difference of the cross-entropy in nats.  Effects and
  intervals are reported back as ratios minus one (``expm1``): +0.02 means
  randomized's metric is 2% better (geometric mean over seeds).
* ``absolute`` margin (accuracy): ``randomized - regular`` (sign-flipped for a
  lower-is-better metric); the margin is in the metric's units.

The tests, the multiplicity correction and the four classes are those of
``bptt.study.stats`` (paired t or exact sign flips, Holm or Benjamini–Hochberg over *all*
comparisons of the study, TOST against ±δ).

Run status.  A run **diverged** if its loss or gradient became non-finite; it
**failed to learn** if its final metric is not better than chance (the task's chance
level; for a task without one, the run's own metric at initialization).  Neither
has a meaningful final metric, so both are *scored* as the worse of every run of the
(task, cell, T) group that did learn, the metric at initialization and the chance
level — "no better than anything that trained".  A comparison in which both
strategies failed in every seed has identical scores, no test and is inconclusive; so
is a comparison where neither strategy's mean beats chance (or, without a chance level,
its start) by more than the margin — equal at chance says nothing about training.

Convergence.  A run that trained but did not converge (``converged`` False in the
runs table) keeps its score, but every comparison involving one counts it
(``regular_unconverged``, ``randomized_unconverged``) and the findings count such
comparisons per task, so the report can mark them.

The three reasons d2l gives for the claim are each measured and then related to the
outcome of the comparisons they are meant to explain (``findings_table``):
1. few steps capture the dependencies that matter — the cosine between regular(τ)'s
   gradient and the exact one (supported where it is at least ``cosine_support``);
2. the extra variance cancels the gain in accuracy — randomized's MSE (bias² +
   variance) against regular's (bias² only) at the same τ, and against SGD's own
   minibatch noise (not applicable on a task without minibatch noise);
3. truncation regularizes — regular's train/validation gap against full's, and
   whether regular's validation metric is at least as good as full's (not
   applicable where the task has no held-out gap that can speak — see
   ``reasons.HELD_OUT``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import stats
from .audit import as_flag
from .reasons import regularization
from .tables import metric_column

SCALES = ("relative", "absolute")
RUN_STATUS = ("ok", "diverged", "failed-to-learn")


@dataclass(frozen=True)
class Margin:
    """Practical-equivalence margin of one task: ``value`` on a ``scale`` (see module doc)."""

    scale: str
    value: float

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"margin scale {self.scale!r}; valid: {', '.join(SCALES)}")
        if not (np.isfinite(self.value) and self.value > 0):
            raise ValueError(f"margin value must be a positive number, got {self.value}")

    @property
    def on_test_scale(self):
        """δ on the scale of the per-seed effects the tests see."""
        return float(np.log1p(self.value)) if self.scale == "relative" else float(self.value)

    def beats(self, value, reference, higher):
        """Whether ``value`` is better than ``reference`` by more than the margin
        (elementwise; ``higher``: higher is better).  NaN beats nothing."""
        value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.scale == "relative":
                return np.where(higher, value > reference * (1 + self.value), value < reference / (1 + self.value))
            return np.where(higher, value > reference + self.value, value < reference - self.value)

    def to_display(self, x):
        """Effects on the test scale back to the margin's units (ratio - 1 or metric units)."""
        x = np.asarray(x, dtype=np.float64)
        return np.expm1(x) if self.scale == "relative" else x


def parse_margin(text):
    """``task=scale:value`` (e.g. ``timemachine=relative:0.01``) -> (task, Margin)."""
    try:
        task, rest = text.split("=", 1)
        scale, value = rest.split(":", 1)
        return task.strip(), Margin(scale.strip(), float(value))
    except ValueError as e:
        raise ValueError(f"--margin {text!r}: expected task=scale:value with scale in "
                         f"{', '.join(SCALES)} and a positive value ({e})") from None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the verdict decides with; each value is written into its tables.

    No defaults here: they live in the config schema (key ``verdict``), which the
    pipeline passes on through the ``verdict`` command's options.
    """

    margins: dict  # task -> Margin
    alpha: float
    test: str
    correction: str
    cosine_support: float

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.test not in stats.TESTS:
            raise ValueError(f"test {self.test!r}; valid: {', '.join(stats.TESTS)}")
        if self.correction not in stats.CORRECTIONS:
            raise ValueError(f"correction {self.correction!r}; valid: {', '.join(stats.CORRECTIONS)}")
        if not 0 < self.cosine_support <= 1:
            raise ValueError(f"cosine_support must be in (0, 1], got {self.cosine_support}")

    def margin(self, task):
        if task not in self.margins:
            raise ValueError(f"no equivalence margin for task {task!r}: set verdict.margins.{task} "
                             f"in the config (given: {', '.join(self.margins) or 'none'})")
        return self.margins[task]


def _better(a, b, higher):
    """a strictly better than b, elementwise (``higher``: bool array, higher is better)."""
    with np.errstate(invalid="ignore"):
        return np.where(higher, a > b, a < b)


def _init_metrics(runs, curves):
    """Metric at initialization of each run (update-0 evaluation), aligned with ``runs``."""
    keys = ["task", "cell", "T", "strategy", "tau", "seed"]
    first = curves[curves["update"] == 0].drop_duplicates(keys)[keys + ["val_metric"]]
    merged = runs[keys].merge(first, on=keys, how="left")
    return merged["val_metric"].to_numpy(dtype=np.float64)


def scored_metric(runs, curves):
    """``runs`` with ``metric`` (judged), ``init_metric``, ``status`` and ``score`` columns."""
    runs = runs.copy().reset_index(drop=True)
    runs["metric"] = runs[metric_column(runs)].astype(np.float64)
    runs["init_metric"] = _init_metrics(runs, curves)
    higher = runs["higher_is_better"].astype(bool).to_numpy()
    metric = runs["metric"].to_numpy()
    chance = runs["chance"].astype(np.float64).to_numpy()
    reference = np.where(np.isfinite(chance), chance, runs["init_metric"].to_numpy())
    diverged = runs["diverged"].astype(bool).to_numpy() | ~np.isfinite(metric)
    learned = np.isfinite(reference) & _better(metric, reference, higher)
    learned |= ~np.isfinite(reference) & np.isfinite(metric)  # nothing to compare with
    runs["status"] = np.where(diverged, "diverged", np.where(learned, "ok", "failed-to-learn"))
    score = metric.copy()
    for _, idx in runs.groupby(["task", "cell", "T"]).groups.items():
        g = runs.loc[idx]
        bad = g.index[g["status"] != "ok"]
        if len(bad) == 0:
            continue
        hib = bool(g["higher_is_better"].iloc[0])
        candidates = np.r_[g.loc[g["status"] == "ok", "metric"], g["init_metric"], g["chance"]]
        candidates = candidates[np.isfinite(candidates.astype(np.float64))]
        worst = (candidates.min() if hib else candidates.max()) if len(candidates) else np.nan
        score[bad] = worst
    runs["score"] = score
    return runs


def _unconverged(runs):
    """Runs that trained but did not converge (a diverged run is counted as diverged)."""
    if "converged" not in runs:
        return 0
    ok = (runs["status"] != "diverged").to_numpy()
    return int(((as_flag(runs["converged"]) == False).fillna(False).to_numpy() & ok).sum())  # noqa: E712


def _effects(reg, rnd, higher, margin):
    """Per-seed effects on the test scale (positive: randomized better)."""
    if margin.scale == "relative":
        if np.any(reg <= 0) or np.any(rnd <= 0):
            raise ValueError("a relative margin needs a positive metric (log ratio); "
                             "use an absolute margin for this task")
        return np.log(rnd / reg) if higher else np.log(reg / rnd)
    return (rnd - reg) if higher else (reg - rnd)


def verdict_table(runs, curves, settings):
    """One row per (task, cell, T, τ, schedule): effect, interval, p-values, class."""
    runs = scored_metric(runs, curves)
    key = ["task", "cell", "T", "strategy", "tau", "seed"]
    if runs.duplicated(key).any():
        dup = runs[runs.duplicated(key, keep=False)].iloc[0]
        raise ValueError(f"several runs per (task, cell, T, strategy, τ, seed), e.g. {dict(dup[key])}: "
                         "select one run per grid point (e.g. the chosen learning rate) first")
    regular = runs[runs["strategy"] == "regular"]
    randomized = runs[runs["kind"] == "randomized"]
    rows, effects, margins = [], [], []
    for (task, cell, T, tau), reg in regular.groupby(["task", "cell", "T", "tau"]):
        reg = reg.set_index("seed")
        margin = settings.margin(task)
        higher = bool(reg["higher_is_better"].iloc[0])
        here = randomized[(randomized.task == task) & (randomized.cell == cell)
                          & (randomized["T"] == T) & (randomized["tau"] == tau)]
        for schedule, rnd in here.groupby("schedule"):
            rnd = rnd.set_index("seed")
            seeds = reg.index.intersection(rnd.index).sort_values()
            r0, r1 = reg.loc[seeds], rnd.loc[seeds]
            e = _effects(r0["score"].to_numpy(), r1["score"].to_numpy(), higher, margin)
            effects.append(e)
            margins.append(margin)
            rows.append({
                "task": task, "cell": cell, "T": T, "tau": tau,
                "schedule": schedule,
                "metric": reg["metric_name"].iloc[0], "seeds": len(seeds),
                "regular_mean": float(r0["score"].mean()),
                "randomized_mean": float(r1["score"].mean()),
                "margin_scale": margin.scale, "margin": margin.value,
                "regular_diverged": int((r0["status"] == "diverged").sum()),
                "randomized_diverged": int((r1["status"] == "diverged").sum()),
                "regular_failed": int((r0["status"] == "failed-to-learn").sum()),
                "randomized_failed": int((r1["status"] == "failed-to-learn").sum()),
                "regular_unconverged": _unconverged(r0),
                "randomized_unconverged": _unconverged(r1),
                "neither_learned": not (_learned(r0, higher, margin) or _learned(r1, higher, margin)),
            })
    if not rows:
        raise ValueError("no (regular, randomized) pairs in the runs: the grid needs both strategies")
    delta = np.array([m.on_test_scale for m in margins])
    out = stats.compare(effects, delta, settings.alpha, settings.test, settings.correction)
    v = pd.DataFrame(rows)
    show = [m.to_display for m in margins]
    v["effect"] = [f(x) for f, x in zip(show, out["mean"])]
    v["effect_lo"] = [f(x) for f, x in zip(show, out["lo"])]
    v["effect_hi"] = [f(x) for f, x in zip(show, out["hi"])]
    absolute = v["margin_scale"] == "absolute"
    base = v["regular_mean"].abs().replace(0, np.nan)
    v["relative_effect"] = np.where(absolute, v["effect"] / base, v["effect"])
    v["p"], v["p_adjusted"] = out["p"], out["p_adj"]
    v["p_tost"], v["p_tost_adjusted"] = out["p_tost"], out["p_tost_adj"]
    v["significant"] = out["significant"]
    # equal at chance is no evidence about training: neither strategy learned the task
    v["outcome"] = np.where(v["neither_learned"], "inconclusive", out["outcome"])
    v["mde"] = [f(x) for f, x in zip(show, out["mde"])]
    v["power_at_margin"] = out["power_at_margin"]
    v["note"] = _notes(v, out)
    return v


def _learned(runs, higher, margin):
    """Whether a strategy's mean score beats its reference (chance; for a task without a
    chance level, the metric at initialization) by more than the task's margin."""
    reference = np.where(np.isfinite(runs["chance"].astype(np.float64)), runs["chance"],
                         runs["init_metric"]).astype(np.float64)
    ref, mean = float(np.nanmean(reference)) if np.isfinite(reference).any() else np.nan, \
        float(runs["score"].mean())
    if not np.isfinite(ref):
        return True
    return bool(margin.beats(mean, ref, higher))


def _notes(v, out):
    """Why a comparison has no test, or why its test does not count (empty otherwise)."""
    notes = []
    for (_, r), p in zip(v.iterrows(), out["p"]):
        if np.isfinite(p):
            notes.append("inconclusive: neither strategy learned the task (both within the "
                         "margin of chance)" if r["neither_learned"] else "")
        elif r["seeds"] < 2:
            notes.append("no test: one seed")
        elif r["regular_failed"] + r["regular_diverged"] == r["seeds"] and \
                r["randomized_failed"] + r["randomized_diverged"] == r["seeds"]:
            notes.append("no test: both strategies diverged or failed to learn in every seed")
        else:
            notes.append("no test: the paired differences do not vary over seeds")
    return notes


def outcome_counts(verdict, by=None):
    """Counts of the four classes, overall (``by=None``) or per value of column ``by``."""
    keys = [by] if by else []
    if keys:
        counts = verdict.groupby(keys + ["outcome"]).size().unstack(fill_value=0)
    else:
        counts = verdict["outcome"].value_counts().to_frame().T
    for c in stats.CLASSES:
        if c not in counts:
            counts[c] = 0
    counts = counts[list(stats.CLASSES)]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index() if keys else counts.reset_index(drop=True)


def counts_table(verdict):
    """The class counts overall and by task, schedule and cell, as one long table."""
    parts = [outcome_counts(verdict).assign(group="all", value="all")]
    for by in ("task", "schedule", "cell"):
        parts.append(outcome_counts(verdict, by).rename(columns={by: "value"}).assign(group=by))
    return pd.concat(parts, ignore_index=True)[["group", "value", *stats.CLASSES, "total"]]


def status_table(runs, curves):
    """Runs per (task, strategy) by status: ok, diverged, failed to learn."""
    scored = scored_metric(runs, curves)
    t = scored.groupby(["task", "strategy", "status"]).size().unstack(fill_value=0)
    for s in RUN_STATUS:
        if s not in t:
            t[s] = 0
    t = t[list(RUN_STATUS)].rename(columns={"failed-to-learn": "failed_to_learn"})
    t.insert(0, "runs", t.sum(axis=1))
    return t.reset_index()


NO_NOISE = 1e-12  # SGD's relative variance below this is rounding: a deterministic task


def _ratio(a, b, floor=0.0):
    """a / b, NaN when b is not above ``floor`` (then the ratio is not applicable)."""
    return float(a / b) if b > floor else float("nan")


def reasons_table(runs, gradstats, cosine_support, checkpoint="final"):
    """One row per (reason, task, cell, T, τ[, schedule]) with the evidence and a finding.

    ``applicable`` is False where the evidence cannot speak (see the module doc);
    ``supported`` is then False and ``note`` says why.
    """
    rows = []
    gs = gradstats[gradstats["checkpoint"] == checkpoint]
    if gs.empty:
        gs = gradstats
    if "seed" in gs:  # several measured seeds: their mean, one row per estimator
        keys = ["task", "cell", "seq_len", "checkpoint", "kind", "strategy", "tau", "schedule"]
        gs = gs.groupby(keys, as_index=False, sort=False).mean(numeric_only=True)
    # (1) regular(τ)'s cosine with the exact gradient
    for (task, cell, T, tau), g in gs[gs["kind"] == "regular"].groupby(["task", "cell", "seq_len", "tau"]):
        cos = float(g["cosine_mean"].mean())
        rows.append({"reason": 1, "task": task, "cell": cell, "T": T, "tau": tau, "schedule": "",
                     "evidence": "cosine(regular, exact)", "value": cos, "reference": cosine_support,
                     "applicable": True, "supported": cos >= cosine_support, "note": ""})
    # (2) MSE of randomized vs regular at the same τ, and variance vs SGD noise
    for (task, cell, T, tau), g in gs.groupby(["task", "cell", "seq_len", "tau"]):
        reg = g[g["kind"] == "regular"]
        if reg.empty:
            continue
        reg_mse = float(reg["relative_mse"].iloc[0])
        reg_window = float(reg["relative_mse_window"].iloc[0]) if "relative_mse_window" in reg else np.nan
        for _, r in g[g["kind"] == "randomized"].iterrows():
            noise = float(r["sgd_relative_variance"])
            # over a window of W updates the variance averages down and the bias does not
            window = float(r.get("relative_mse_window", np.nan))
            rows.append({"reason": 2, "task": task, "cell": cell, "T": T, "tau": tau,
                         "schedule": r["schedule"], "evidence": "MSE(randomized) / MSE(regular)",
                         "value": _ratio(r["relative_mse"], reg_mse), "reference": 1.0,
                         "applicable": True, "supported": bool(r["relative_mse"] >= reg_mse),
                         "window": int(r["window"]) if "window" in r and pd.notna(r["window"]) else np.nan,
                         "value_window": _ratio(window, reg_window),
                         "supported_window": (bool(window >= reg_window)
                                              if np.isfinite(window) and np.isfinite(reg_window)
                                              else np.nan),
                         "variance_over_sgd_noise": _ratio(r["relative_variance"], noise, NO_NOISE),
                         "note": "" if noise > NO_NOISE else
                         "no minibatch noise on this task: variance_over_sgd_noise not applicable"})
    # (3) the held-out gap of regular against full: one measurement, the one reported
    # along training (reasons.regularization: best checkpoints, converged runs only)
    metric_col = "best_val_metric" if "best_val_metric" in runs else "final_val_metric"
    for _, r in regularization(runs).iterrows():
        g = runs[(runs["task"] == r["task"]) & (runs["cell"] == r["cell"]) & (runs["T"] == r["T"])]
        sign = 1.0 if bool(g["higher_is_better"].iloc[0]) else -1.0
        g = g[~g["diverged"].astype(bool)]
        metric = float(g.loc[(g["strategy"] == "regular") & (g["tau"] == r["tau"]), metric_col].mean()
                       - g.loc[g["strategy"] == "full", metric_col].mean())
        gap = float(r["gap_regular_minus_full"])
        applicable = not r["reason3_note"] and np.isfinite(gap)
        rows.append({"reason": 3, "task": r["task"], "cell": r["cell"], "T": r["T"], "tau": r["tau"],
                     "schedule": "", "evidence": "gap(regular) - gap(full)", "value": gap,
                     "reference": 0.0, "applicable": applicable,
                     "supported": applicable and bool(gap < 0 and sign * metric >= 0),
                     "gap_smaller": applicable and bool(gap < 0),
                     "metric_no_worse": applicable and bool(sign * metric >= 0),
                     "metric_regular_minus_full": metric, "note": r["reason3_note"]})
    cols = ["reason", "task", "cell", "T", "tau", "schedule", "evidence", "value", "reference",
            "applicable", "supported", "window", "value_window", "supported_window",
            "gap_smaller", "metric_no_worse", "variance_over_sgd_noise", "metric_regular_minus_full",
            "note"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _reason_of_comparison(verdict, reasons):
    """Each verdict row with the finding of each reason at its (task, cell, T, τ[, schedule]).

    Reason 2 is read twice: for one update (``reason2``) and for the mean of a window of
    W updates (``reason2w``, where the variance averages down and the bias does not)."""
    v = verdict.copy()
    key = ["task", "cell", "T", "tau"]
    applicable = reasons[reasons["applicable"].astype(bool)]
    for name, k, column in ((1, 1, "supported"), (2, 2, "supported"), ("2w", 2, "supported_window"),
                            (3, 3, "supported")):
        if column not in applicable:
            v[f"reason{name}"] = np.nan
            continue
        on = key + (["schedule"] if k == 2 else [])
        r = applicable.loc[applicable["reason"] == k, on + [column]]
        r = r.dropna(subset=[column]).drop_duplicates(on).rename(columns={column: f"reason{name}"})
        v = v.merge(r, on=on, how="left")
    return v


def findings_table(verdict, reasons, runs, curves, settings):
    """One row per task: the outcome, its extremes, and each reason against the outcome.

    For reason k, ``reason{k}_better`` / ``reason{k}_better_of`` count the comparisons
    where randomized was better in which the reason's evidence holds, and
    ``reason{k}_rest`` / ``reason{k}_rest_of`` the same among all other comparisons
    (equivalent, worse or inconclusive); ``_of`` is 0 where the reason was not measured
    or not applicable.  Reasons 1 and 2 predict no gain for randomized where they hold.
    ``reason2w_*`` is reason 2 for the average of ``reason2_window`` updates, what SGD
    effectively follows: there the variance shrinks by W and the bias does not.
    """
    v = _reason_of_comparison(verdict, reasons)
    scored = scored_metric(runs, curves)
    rows = []
    for task, g in v.groupby("task"):
        margin = settings.margin(task)
        counts = g["outcome"].value_counts()
        hib = runs.loc[runs["task"] == task, "higher_is_better"]
        row = {"task": task, "metric": g["metric"].iloc[0],
               "higher_is_better": bool(hib.iloc[0]) if len(hib) else False,
               "split": metric_column(runs).removeprefix("final_").removesuffix("_metric"),
               "comparisons": len(g), **{c: int(counts.get(c, 0)) for c in stats.CLASSES},
               "margin_scale": margin.scale, "margin": margin.value, "alpha": settings.alpha,
               "test": settings.test, "correction": settings.correction,
               "cosine_support": settings.cosine_support,
               "seeds_min": int(g["seeds"].min()), "seeds_max": int(g["seeds"].max()),
               "tested": int(g["p"].notna().sum()),
               "mde_median": float(g["mde"].median()),
               "power_at_margin_median": float(g["power_at_margin"].median())}
        for label, cls, pick in (("best", "better", "idxmax"), ("worst", "worse", "idxmin")):
            sub = g[g["outcome"] == cls]
            best = sub.loc[getattr(sub["effect"], pick)()] if len(sub) else None
            for col in ("schedule", "cell", "T", "tau", "effect", "effect_lo", "effect_hi"):
                row[f"{label}_{col}"] = best[col] if best is not None else None
            row[f"{label}_unconverged"] = (int(best["regular_unconverged"] + best["randomized_unconverged"])
                                           if best is not None else 0)
        top = g.loc[g["effect"].idxmax()] if g["effect"].notna().any() else None
        row["max_effect"] = float(top["effect"]) if top is not None else np.nan
        row["max_effect_outcome"] = top["outcome"] if top is not None else ""
        is_better = g["outcome"] == "better"
        # where neither strategy learned, the full-BPTT parameters the reasons are measured
        # at never picked up the dependency either: their evidence says nothing
        learned = ~g["neither_learned"].astype(bool) if "neither_learned" in g else pd.Series(True, g.index)
        row["neither_learned"] = int((~learned).sum())
        for k in (1, 2, "2w", 3):
            col = g[f"reason{k}"]
            measured = col.notna() & learned
            row[f"reason{k}_better"] = int((col[is_better & measured] == True).sum())  # noqa: E712
            row[f"reason{k}_better_of"] = int((is_better & measured).sum())
            row[f"reason{k}_rest"] = int((col[~is_better & measured] == True).sum())  # noqa: E712
            row[f"reason{k}_rest_of"] = int((~is_better & measured).sum())
        r3 = reasons[(reasons["reason"] == 3) & (reasons["task"] == task)]
        row["reason3_applicable"] = bool(r3["applicable"].astype(bool).any()) if len(r3) else False
        # reason 3's two parts, over the (cell, T, τ) points where it was measured
        r3 = r3[r3["applicable"].astype(bool)]
        row["reason3_points"] = len(r3)
        for part in ("gap_smaller", "metric_no_worse"):
            row[f"reason3_{part}"] = int(r3[part].astype(bool).sum()) if part in r3 else 0
        r2 = reasons[(reasons["reason"] == 2) & (reasons["task"] == task)]
        windows = r2["window"].dropna() if "window" in r2 else r2["reason"].iloc[:0]
        row["reason2_window"] = int(windows.max()) if len(windows) else np.nan
        ratio = r2["variance_over_sgd_noise"].astype(np.float64)
        row["variance_over_sgd_noise_median"] = float(ratio.median()) if ratio.notna().any() else np.nan
        st = scored[scored["task"] == task]["status"].value_counts()
        row["runs"] = int(st.sum())
        row["runs_diverged"] = int(st.get("diverged", 0))
        row["runs_failed"] = int(st.get("failed-to-learn", 0))
        unconv = g["regular_unconverged"] + g["randomized_unconverged"]
        row["comparisons_unconverged"] = int((unconv > 0).sum())
        row["comparisons_unconverged_decided"] = int(((unconv > 0) & (g["outcome"] != "inconclusive")).sum())
        row["runs_unconverged"] = _unconverged(scored[scored["task"] == task])
        rows.append(row)
    return pd.DataFrame(rows)
