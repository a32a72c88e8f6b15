"""Render ``report.html``: one self-contained file, every number read from the tables.

All prose lives in the template shipped with the package
(``bptt/study/templates/report.html.j2``); this module only loads the tables, figures and
captions and hands them over.  Figures are embedded as base64 PNG, tables as HTML.
Each sentence of the template is conditional on what the tables hold (the verdict's
``findings.csv`` gives, per task, the counts of each class, the extremes and each
reason against the outcome), so the text stays true for every outcome.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from .io import write_text
from ..engine.schedules import SCHEDULES, make_schedule
from .templates import REPORT



def _img(path):
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _html(df, floatfmt="{:.4g}", na_rep="–"):
    return df.to_html(index=False, classes="table", border=0, na_rep=na_rep,
                      float_format=lambda x: floatfmt.format(x))


def _versions():
    out = {"python": platform.python_version()}
    for pkg in ("bptt", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "snakemake", "jinja2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _git_commit():
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return r.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown (not a git checkout)"


def _runtime(benchmarks, runs, runs_all=None):
    total_fit = float(runs["wall_time"].sum())
    all_fit = float(runs_all["wall_time"].sum()) if runs_all is not None and "wall_time" in runs_all else None
    bench_total = None
    if benchmarks and Path(benchmarks).exists():
        s = 0.0
        for f in Path(benchmarks).rglob("*.tsv"):
            try:
                s += float(pd.read_csv(f, sep="\t")["s"].iloc[0])
            except (KeyError, IndexError, ValueError, pd.errors.EmptyDataError):
                continue
        bench_total = s
    return {"training_seconds": total_fit, "job_seconds": bench_total, "all_training_seconds": all_fit}


def _figures(pngs, captions_dir):
    """[{name, src, caption}] in the given order; a peer-benchmark figure next to them joins."""
    pngs = [Path(p) for p in pngs]
    if pngs and (pngs[0].parent / "bench.png").exists() and all(p.stem != "bench" for p in pngs):
        pngs.append(pngs[0].parent / "bench.png")
    out = []
    for p in pngs:
        if not p.exists():
            raise FileNotFoundError(f"figure {p} is missing; run the figures command first")
        caption = Path(captions_dir) / f"{p.stem}.rst"
        if not caption.exists():
            raise FileNotFoundError(f"no caption for figure {p.stem}: {caption} is missing")
        out.append({"name": p.stem, "src": _img(p), "caption": caption.read_text().strip()})
    return out


def _schedule_params(config, names):
    """Parameters of each schedule used, from the config with the schedule's defaults."""
    given = (config.get("schedules") or {}) if isinstance(config, dict) else {}
    out = {}
    for name in names:
        params = dict(given.get(name) or {})
        if name == "minlen" and "min_length" not in params:
            out[name] = {}  # its default depends on τ̄ (⌊τ̄/2⌋), stated in the template
            continue
        out[name] = make_schedule(name, 64.0, **params).params()
    return out


def _tuning(choices):
    """Size of the learning-rate grid and how often the chosen rate sits at its edge."""
    if choices is None or choices.empty:
        return {"rates": 1, "points": 0, "at_edge": 0}
    keys = [c for c in choices.columns if c not in
            ("lr", "seeds", "val_metric_mean", "chosen", "at_grid_edge")]
    chosen = choices[choices["chosen"].astype(bool)]
    return {"rates": int(choices.groupby(keys)["lr"].nunique().max()), "points": len(chosen),
            "at_edge": int(chosen["at_grid_edge"].astype(bool).sum())}


def _records(df):
    """Rows as dicts with NaN -> None (the template tests ``is none``)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def _read(t, name):
    """``name.csv`` of the tables folder, or None where an older study has no such table."""
    path = t / f"{name}.csv"
    if not path.exists() or path.stat().st_size == 0:
        return None
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _corpus_splits(runs):
    """[{split, train_characters, val_characters, test_characters}] of the language-model runs.

    Read from the runs table (``tables.CORPUS_COLUMNS``, from each run's final.json); one
    entry per split the timemachine runs used, none where the table records no split.
    """
    from .tables import CORPUS_COLUMNS

    if not set(CORPUS_COLUMNS) <= set(runs.columns):
        return []
    lm = runs[(runs["task"] == "timemachine") & runs["split"].notna()]
    blocks = lm[list(CORPUS_COLUMNS)].drop_duplicates().sort_values("split")
    return [{"split": str(r["split"]), **{k: int(r[k]) for k in CORPUS_COLUMNS[1:]}}
            for _, r in blocks.iterrows()]


def _anchor(t, config):
    """The d2l anchor's row, d2l's reported numbers and the anchor's settings (None: not run)."""
    from .anchor import D2L_REPORTED, D2L_UPDATES, d2l_config

    table = _read(t, "anchor")
    row = _records(table)[0] if table is not None and len(table) else None
    updates = ((config.get("anchor") or {}).get("updates") if isinstance(config, dict) else None) or D2L_UPDATES
    cfg = d2l_config(int(updates))
    settings = {k: getattr(cfg, k) for k in ("estimator", "cell", "hidden", "seq_len", "batch_size",
                                             "optimizer", "lr", "clip", "updates", "init", "init_scale")}
    return {"row": row, "d2l": D2L_REPORTED, "d2l_updates": D2L_UPDATES, "settings": settings,
            "table": _html(table) if table is not None and len(table) else ""}


def _audit(t, runs):
    """The training audit (``bptt.study.audit``) for the template: records, per-task summaries, tables."""
    from .audit import MATCH_TOLERANCE, costs_summary

    out = {"match_tolerance": MATCH_TOLERANCE}
    for name in ("convergence", "unconverged", "clipping", "costs", "influence_theta", "lr_edges"):
        df = _read(t, name)
        out[name] = _records(df) if df is not None else []
        out[f"{name}_table"] = _html(df) if df is not None and len(df) else ""
    conv = _read(t, "convergence")
    out["converged_total"] = {k: int(conv[k].sum()) if conv is not None else 0
                              for k in ("runs", "converged", "unconverged", "not_recorded")}
    # learning apart from stopping (None: tables that predate the split)
    out["converged_total"] |= {k: (int(conv[k].sum()) if conv is not None and k in conv else None)
                               for k in ("converged_learned", "stopped_without_learning", "diverged",
                                         "failed_to_learn", "never_improved", "near_chance",
                                         "not_learned", "blew_up", "blew_up_from_init")}
    costs = _read(t, "costs")
    out["costs_summary"] = costs_summary(costs) if costs is not None and len(costs) else []
    clip = _read(t, "clipping")
    rows = []
    if clip is not None and len(clip):
        for task, g in clip.groupby("task", sort=True):
            rnd = g[g["strategy"].str.startswith("randomized")]
            reg = g[g["strategy"] == "regular"]
            rows.append({"task": task, "clip": float(g["clip"].max()),
                         "randomized_mean": float(rnd["clip_fraction_mean"].mean()) if len(rnd) else None,
                         "randomized_max": float(rnd["clip_fraction_max"].max()) if len(rnd) else None,
                         "regular_mean": float(reg["clip_fraction_mean"].mean()) if len(reg) else None})
    out["clipping_by_task"] = _records(pd.DataFrame(rows)) if rows else []
    lr = _read(t, "lr_edges")
    out["lr_total"] = ({k: int(lr[k].sum()) for k in ("grid_points", "at_low_edge", "at_high_edge", "inside")}
                       | {"rates": int(lr["rates"].max()),
                          "edge_steep": (int(lr["edge_steep"].sum())
                                         if "edge_steep" in lr and lr["edge_steep"].notna().any() else None)}
                       if lr is not None and len(lr) else None)
    return out


def _reasons_along(t):
    """The reasons along training (``python -m bptt reasons``) for the template."""
    path = t / "reasons_outcomes.csv"
    out = {"reasons_along": [], "reasons_notes": {}, "reasons_checkpoints": [], "reasons_seeds": 0,
           "reasons_outcomes_table": ""}
    if not path.exists() or path.stat().st_size == 0:
        return out
    outcomes = pd.read_csv(path)
    table = pd.read_csv(t / "reasons_training.csv", keep_default_na=False, na_values=[""])
    if outcomes.empty:
        return out
    last = outcomes[outcomes["progress"] == outcomes.groupby("task")["progress"].transform("max")]
    out["reasons_along"] = [(task, _records(g)) for task, g in last.groupby("task")]
    out["reasons_notes"] = {task: str(g["reason3_note"].dropna().iloc[0]) if g["reason3_note"].notna().any() else ""
                            for task, g in table.groupby("task")}
    out["reasons_checkpoints"] = list(outcomes.sort_values("progress")["checkpoint"].drop_duplicates())
    out["reasons_seeds"] = int(table["seeds"].max())
    out["reasons_outcomes_table"] = _html(outcomes)
    return out


def render_report(tables_dir, figures, captions_dir, config_path, out_path, benchmarks=None,
                  template_path=None):
    """Write ``out_path`` from the tables in ``tables_dir`` and the PNG files ``figures``.

    ``template_path`` overrides the packaged template (for development).
    """
    t = Path(tables_dir)
    runs = pd.read_csv(t / "runs.csv")
    verdict = pd.read_csv(t / "verdict.csv", keep_default_na=False, na_values=[""])
    counts = pd.read_csv(t / "verdict_counts.csv")
    reasons = pd.read_csv(t / "reasons.csv", keep_default_na=False, na_values=[""])
    findings = pd.read_csv(t / "findings.csv", keep_default_na=False, na_values=[""])
    status = pd.read_csv(t / "run_status.csv")
    summary = pd.read_csv(t / "summary.csv")
    gradstats = pd.read_csv(t / "gradstats.csv")
    lr = pd.read_csv(t / "lr_choices.csv") if (t / "lr_choices.csv").exists() else None
    config_text = Path(config_path).read_text()
    config = yaml.safe_load(config_text) or {}
    schedules = [s for s in SCHEDULES if s in set(verdict["schedule"])]
    vcols = ["task", "cell", "T", "tau", "schedule", "metric", "seeds", "regular_mean",
             "randomized_mean", "effect", "effect_lo", "effect_hi", "margin", "p", "p_adjusted",
             "p_tost", "p_tost_adjusted", "outcome", "mde", "regular_diverged", "regular_failed",
             "randomized_diverged", "randomized_failed", "regular_unconverged", "randomized_unconverged",
             "note"]
    vcols = [c for c in vcols if c in verdict]
    gcols = ["task", "cell", "seq_len", "checkpoint", "estimator", "relative_bias", "relative_bias2_lo",
             "relative_bias2_hi", "relative_variance", "relative_mse", "cosine_mean",
             "sgd_relative_variance"]
    better = verdict[verdict.outcome == "better"]
    worse = verdict[verdict.outcome == "worse"]
    ctx = {
        "title": "Does randomized truncation beat regular truncation?",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_runs": len(runs),
        "n_trained": int(lr["seeds"].sum()) if lr is not None else len(runs),
        "tasks": sorted(runs.task.unique()),
        "corpus_splits": _corpus_splits(runs),
        "cells": sorted(runs.cell.unique()),
        "Ts": sorted(int(x) for x in runs["T"].unique()),
        "taus": sorted(float(x) for x in runs.tau.unique() if x > 0),
        "seeds": int(runs.seed.nunique()),
        "schedules": schedules,
        "schedule_params": _schedule_params(config, schedules),
        "total": _records(counts[counts.group == "all"])[0],
        "findings": _records(findings),
        "status": _records(status),
        "figures": _figures(figures, captions_dir),
        "verdict_table": _html(verdict[[c for c in vcols if c in verdict]], na_rep=""),
        "better_table": _html(better[vcols], na_rep="") if len(better) else "",
        "worse_table": _html(worse[vcols], na_rep="") if len(worse) else "",
        "counts_table": _html(counts, "{:.0f}"),
        "status_table": _html(status, "{:.0f}"),
        "reasons_table": _html(reasons, na_rep="n/a"),
        "summary_table": _html(summary),
        "gradstats_table": _html(gradstats[[c for c in gcols if c in gradstats]]),
        **_reasons_along(t),
        "anchor": _anchor(t, config),
        **_audit(t, runs),
        "config_text": config_text,
        "versions": _versions(),
        "commit": _git_commit(),
        "runtime": _runtime(benchmarks, runs, _read(t, "runs_all")),
        "max_wall": float(np.nanmax(runs.wall_time)) if len(runs) else 0.0,
        "tuning": _tuning(lr),
    }
    template = Path(template_path) if template_path else REPORT
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template.parent)), autoescape=jinja2.select_autoescape(default=False),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template(template.name).render(**ctx)
    write_text(out_path, html)
