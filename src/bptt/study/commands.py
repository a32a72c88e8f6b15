"""Study-level commands: ``tables``, ``verdict``, ``figures``, ``report``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .names import REASONS_TABLES, TABLES, VERDICT_TABLES


def add_study_commands(sub, fmt):
    p = sub.add_parser("tables", help="tidy tables from run folders and gradient statistics",
                       formatter_class=fmt)
    p.add_argument("--runs", nargs="+", required=True, help="final.json files of the training runs")
    p.add_argument("--gradstats", nargs="+", required=True, help="CSV files from gradstats")
    p.add_argument("--lagprofile", required=True, help="CSV file from lagprofile")
    p.add_argument("--lagprofile-trained", nargs="*", default=[],
                   help="CSV files of trained models' lag profiles (gradstats --lagprofile-out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    p.add_argument("--anchor", nargs="*", default=[], help="anchor.json of the d2l anchor (none: no anchor)")
    p.add_argument("--out-dir", required=True,
                   help="folder for " + ", ".join(f"{name}.csv" for name in TABLES))

    p = sub.add_parser("verdict", help="randomized vs regular, paired by seed; the three reasons",
                       formatter_class=fmt)
    p.add_argument("--tables", required=True, help="folder written by the tables command")
    p.add_argument("--margin", action="append", required=True, metavar="TASK=SCALE:VALUE",
                   help="equivalence margin of a task, e.g. timemachine=relative:0.01 or "
                        "recall=absolute:0.02 (once per task)")
    p.add_argument("--alpha", type=float, required=True, help="level of every test (e.g. 0.05)")
    p.add_argument("--test", required=True, help="paired test over seeds: t | permutation")
    p.add_argument("--correction", required=True, help="multiplicity correction: holm | bh")
    p.add_argument("--cosine-support", type=float, required=True,
                   help="reason 1 is supported where regular(τ)'s cosine with the exact gradient "
                        "is at least this (e.g. 0.9)")
    p.add_argument("--out-dir", required=True,
                   help="folder for " + ", ".join(f"{name}.csv" for name in VERDICT_TABLES))

    p = sub.add_parser("reasons", formatter_class=fmt,
                       help="d2l's reasons along training, beside each comparison's outcome")
    p.add_argument("--tables", required=True,
                   help="folder with the tables and the verdict (runs, gradstats, lagprofile_trained, "
                        "verdict)")
    p.add_argument("--cosine-support", type=float, required=True,
                   help="reason 1 holds where regular(τ)'s cosine with the exact gradient is at least this")
    p.add_argument("--out-dir", required=True,
                   help="folder for " + ", ".join(f"{name}.csv" for name in REASONS_TABLES))

    p = sub.add_parser("figures", help="the study's figures (SVG and PNG)", formatter_class=fmt)
    p.add_argument("--tables", default=None, help="folder with the tables (not needed for bench)")
    p.add_argument("--only", default="", help="comma list of figure names (default: all but bench)")
    p.add_argument("--bench", default=None, help="peer benchmark CSV (for the bench figure)")
    p.add_argument("--out-dir", required=True, help="folder for <name>.svg and <name>.png")

    p = sub.add_parser("report", help="render report.html from the tables and figures", formatter_class=fmt)
    p.add_argument("--tables", required=True, help="folder with the tables")
    p.add_argument("--figures", nargs="+", required=True,
                   help="PNG figures in report order (a bench.png beside them joins as appendix)")
    p.add_argument("--captions", required=True, help="folder with <figure>.rst captions")
    p.add_argument("--config", required=True, help="the study's config file (shown in the report)")
    p.add_argument("--template", default=None,
                   help="Jinja2 template (default: the one shipped in bptt/study/templates)")
    p.add_argument("--benchmarks", default=None, help="folder of Snakemake benchmark files (runtime)")
    p.add_argument("--out", required=True, help="output HTML file")


def cmd_tables(args):
    from .io import write_csv
    from .tables import load_anchor, load_gradstats, load_lagprofiles, load_runs, summarize_runs
    from .tuning import GRID_KEYS, select_learning_rates

    runs_all, curves = load_runs(args.runs)
    runs, choices = select_learning_rates(runs_all)  # each grid point at its chosen rate
    keys = GRID_KEYS + ["lr", "seed"]
    runs_all = runs_all.merge(runs[keys].assign(lr_chosen=True), on=keys, how="left")
    runs_all["lr_chosen"] = runs_all["lr_chosen"].eq(True)
    curves = curves.merge(runs[keys], on=keys, how="inner")
    tables = {"runs": runs, "runs_all": runs_all, "lr_choices": choices, "curves": curves,
              "summary": summarize_runs(runs, args.seed), "gradstats": load_gradstats(args.gradstats),
              "lagprofile": pd.read_csv(args.lagprofile), "anchor": load_anchor(args.anchor),
              "lagprofile_trained": load_lagprofiles(args.lagprofile_trained)}
    out = Path(args.out_dir)
    for name in TABLES:
        write_csv(out / f"{name}.csv", tables[name])


def cmd_verdict(args):
    from .audit import audit_tables
    from .io import write_csv
    from .verdict import (Settings, counts_table, findings_table, parse_margin, reasons_table,
                          status_table, verdict_table)

    margins = dict(parse_margin(m) for m in args.margin)
    settings = Settings(margins=margins, alpha=args.alpha, test=args.test,
                        correction=args.correction, cosine_support=args.cosine_support)
    t = Path(args.tables)
    runs = pd.read_csv(t / "runs.csv")
    curves = pd.read_csv(t / "curves.csv")
    gs = pd.read_csv(t / "gradstats.csv")
    gs["schedule"] = gs["schedule"].fillna("")
    v = verdict_table(runs, curves, settings)
    reasons = reasons_table(runs, gs, settings.cosine_support)
    out = Path(args.out_dir)
    write_csv(out / "verdict.csv", v)
    write_csv(out / "verdict_counts.csv", counts_table(v))
    write_csv(out / "reasons.csv", reasons)
    write_csv(out / "findings.csv", findings_table(v, reasons, runs, curves, settings))
    write_csv(out / "run_status.csv", status_table(runs, curves))
    choices = pd.read_csv(t / "lr_choices.csv") if (t / "lr_choices.csv").exists() else None
    for name, table in audit_tables(runs, choices, settings.margin, curves).items():
        write_csv(out / f"{name}.csv", table)


def cmd_reasons(args):
    from .io import write_csv
    from .reasons import reasons_outcomes, reasons_training

    if not 0 < args.cosine_support <= 1:
        raise ValueError(f"--cosine-support must be in (0, 1], got {args.cosine_support}")
    t = Path(args.tables)
    table = reasons_training(pd.read_csv(t / "gradstats.csv"), pd.read_csv(t / "lagprofile_trained.csv"),
                             pd.read_csv(t / "runs.csv"),
                             pd.read_csv(t / "verdict.csv", keep_default_na=False, na_values=[""]))
    out = Path(args.out_dir)
    write_csv(out / "reasons_training.csv", table)
    write_csv(out / "reasons_outcomes.csv", reasons_outcomes(table, args.cosine_support))


def cmd_figures(args):
    from .figures import ALL_FIGURES, FIGURES, load_tables, save

    names = [n for n in args.only.split(",") if n] or list(FIGURES)
    unknown = [n for n in names if n not in ALL_FIGURES]
    if unknown:
        raise ValueError(f"unknown figures {unknown}; valid: {', '.join(ALL_FIGURES)}")
    tables = load_tables(args.tables) if args.tables else {}
    if args.bench:
        tables["bench"] = pd.read_csv(args.bench)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        save(ALL_FIGURES[name](tables), out / name)


def cmd_report(args):
    from .report import render_report

    render_report(args.tables, args.figures, args.captions, args.config, args.out, args.benchmarks,
                  template_path=args.template)


