"""Command line: ``python -m bptt <command> [options]`` (``--help`` on each).

Every command writes its outputs atomically and validates its arguments before any
work.  The Snakemake rules call these commands; nothing else holds study logic.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np


def _split_option(p):
    from .data import CORPUS_SPLITS

    p.add_argument("--split", default="d2l", choices=list(CORPUS_SPLITS),
                   help="timemachine: the corpus blocks (train, validation, test): d2l (d2l's "
                        "10,032 / 5,032 / 5,032 characters) or book (the whole book, 80/10/10%%)")


def _task_options(p):
    g = p.add_argument_group("task")
    g.add_argument("--task", default="timemachine", help="timemachine | recall | influence")
    _split_option(g)
    g.add_argument("--lag", type=int, default=10, help="recall: delay L between input and target")
    g.add_argument("--alphabet", type=int, default=8, help="recall: number of symbols")
    g.add_argument("--units", type=int, default=23, help="influence: number of units n")
    g.add_argument("--positive", type=int, default=10, help="influence: units p with u = +1")


def _model_options(p):
    g = p.add_argument_group("model")
    g.add_argument("--cell", default="tanh", help="linear | tanh | gru | lstm (influence: ignored)")
    g.add_argument("--hidden", type=int, default=64, help="hidden size H")
    g.add_argument("--seq-len", type=int, default=64, help="sequence length T")
    g.add_argument("--batch-size", type=int, default=32, help="sequences per batch B")


def _int_list(text):
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _float_list(text):
    return [float(x) for x in text.split(",") if x.strip()]


def _str_list(text):
    return [x for x in text.split(",") if x.strip()]


def build_parser():
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m bptt",
        description="Full, truncated and randomized BPTT: the study's commands.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("corpus", help="verify the packaged Time Machine text and write its statistics",
                       formatter_class=fmt)
    _split_option(p)
    p.add_argument("--out", required=True, help="JSON file with the corpus statistics")

    p = sub.add_parser(
        "train", formatter_class=fmt,
        help="one training run, or a group of runs trained in lockstep (curve.csv, final.json, params.npz)",
        description="Train one run, or several runs of one task and model shape as a group in one "
                    "process. --estimator, --lr, --clip and --seed take one value shared by every run "
                    "or one value per --out folder; each run is bit-identical to the same run trained "
                    "alone.")
    _task_options(p)
    _model_options(p)
    g = p.add_argument_group("training (options marked 'per run' take one value or one per --out)")
    g.add_argument("--estimator", nargs="+", default="full",
                   help="per run: full | regular:TAU | windowed:TAU | randomized:SCHEDULE:MEAN[:key=value,...] "
                        "(regular/windowed with TAU >= T never cut: full BPTT)")
    g.add_argument("--optimizer", default="adam", help="sgd | adam")
    g.add_argument("--lr", nargs="+", type=float, default=0.005, help="per run: learning rate")
    g.add_argument("--clip", nargs="+", type=float, default=1.0,
                   help="per run: gradient-norm clipping threshold (0: off)")
    g.add_argument("--updates", type=int, default=300, help="number of parameter updates")
    g.add_argument("--eval-every", type=int, default=25, help="updates between evaluations")
    g.add_argument("--eval-sequences", type=int, default=64, help="sequences in the fixed evaluation sets")
    g.add_argument("--checkpoints", type=_int_list, default=[], help="comma list of updates to save (0: init)")
    g.add_argument("--seed", nargs="+", type=int, default=0,
                   help="per run: seed of the init, data order and estimator draws")
    g.add_argument("--dtype", default="float32", help="float32 | float64")
    g.add_argument("--init", default="default",
                   help="default (the cell's own) | normal (d2l: weights N(0, init_scale^2), zero biases)")
    g.add_argument("--init-scale", type=float, default=0.01, help="standard deviation of --init normal")
    g.add_argument("--cut-pattern", default="per_sequence",
                   help="per_sequence (every sequence draws its own randomized cuts) | per_batch")
    g.add_argument("--patience", type=int, default=0,
                   help="stop after this many evaluations without a better validation metric (0: never)")
    g.add_argument("--converge-window", type=float, default=0.2,
                   help="converged: the best validation metric improved by less than --converge-tol ...")
    g.add_argument("--converge-tol", type=float, default=0.01,
                   help="... (relative) over this last fraction of the updates run")
    p.add_argument("--out", nargs="+", required=True, help="output folder of each run (one run per folder)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("gradstats", help="bias, variance, MSE and cosine of estimators at fixed parameters",
                       formatter_class=fmt)
    _task_options(p)
    _model_options(p)
    p.add_argument("--checkpoint", default=None,
                   help="parameters from train: params.npz, or checkpoints.npz with --update; "
                        "default: the init of --init-seed")
    p.add_argument("--update", type=int, default=None, help="the update to read from checkpoints.npz")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the initialization when no checkpoint")
    p.add_argument("--estimators", type=_str_list, required=True,
                   help="comma list of estimator specs (see train --estimator)")
    p.add_argument("--samples", type=int, default=64, help="K samples per randomized estimator and batch")
    p.add_argument("--batches", type=int, default=8, help="fixed batches (>= 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches and of the estimator draws")
    p.add_argument("--label", default="", help="free text stored in the 'checkpoint' column")
    p.add_argument("--cut-pattern", default="per_sequence",
                   help="randomized samples: per_sequence (each sequence its own cuts, as training) | per_batch")
    p.add_argument("--progress", type=float, default=None,
                   help="fraction of training at the checkpoint (0: init, 1: end), stored in the "
                        "'progress' column")
    p.add_argument("--window", type=int, default=10,
                   help="W: also report the MSE of an average over W updates (bias² + variance/W)")
    p.add_argument("--lagprofile-out", default=None,
                   help="also write the model's lag profile ‖∂l_T/∂h_{T-k}‖ against k (CSV)")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("lagprofile", help="gradient norm against lag under a spectral-radius sweep",
                       formatter_class=fmt)
    p.add_argument("--cells", type=_str_list, default=["linear", "tanh"], help="comma list of cells")
    p.add_argument("--radii", type=_float_list, default=[0.5, 0.9, 1.0, 1.1, 1.5],
                   help="comma list of spectral radii of W_h")
    p.add_argument("--seq-len", type=int, default=64, help="sequence length T")
    p.add_argument("--hidden", type=int, default=32, help="hidden size H")
    p.add_argument("--batch-size", type=int, default=16, help="sequences averaged")
    p.add_argument("--seeds", type=int, default=3, help="number of random matrices per (cell, radius)")
    p.add_argument("--out", required=True, help="output CSV")

    p = sub.add_parser("anchor", formatter_class=fmt,
                       help="d2l's RNNScratch run (tanh, H=32, B=1024, T=32, SGD lr 1, clip 1, "
                            "N(0, 0.01²) init, 100 epochs, full BPTT) beside d2l's reported perplexity")
    p.add_argument("--updates", type=int, default=1000,
                   help="updates (1000 = d2l's 100 epochs of 10 minibatches; fewer only for quick checks)")
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the data order")
    p.add_argument("--out", required=True, help="run folder (final.json, curve.csv, params.npz, anchor.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    from .commands import add_study_commands

    add_study_commands(sub, fmt)
    return parser


MODEL_KEYS = ("task", "split", "lag", "alphabet", "units", "positive", "cell", "hidden", "seq_len", "batch_size")


def _run_config(cls, args, *extra):
    """A RunConfig from the task and model options (and ``extra`` option names)."""
    return cls(**{k: getattr(args, k) for k in MODEL_KEYS + extra})


def cmd_corpus(args):
    from .data import TimeMachine
    from .io import write_json

    write_json(args.out, TimeMachine(args.split).describe())


PER_RUN = ("estimator", "lr", "clip", "seed")


def _per_run(args):
    """{option: one value per --out folder} for the options that may differ between runs."""
    n = len(args.out)
    values = {}
    for name in PER_RUN:
        given = getattr(args, name)
        given = given if isinstance(given, list) else [given]
        if len(given) not in (1, n):
            raise ValueError(f"--{name} has {len(given)} values for {n} --out folders; "
                             f"give one value, or one per folder")
        values[name] = given * n if len(given) == 1 else given
    return values


def cmd_train(args):
    from ..engine.estimators import parse_estimator
    from .train import RunConfig, train_group

    per_run = _per_run(args)
    for spec in dict.fromkeys(per_run["estimator"]):
        est = parse_estimator(spec)
        if est.kind in ("regular", "windowed") and est.tau >= args.seq_len:
            print(f"note: {est.label} with T={args.seq_len} never cuts: it is full BPTT", file=sys.stderr)
    shared = _run_config(dict, args, "optimizer", "updates", "eval_every", "eval_sequences",
                         "checkpoints", "dtype", "init", "init_scale", "cut_pattern", "patience",
                         "converge_window", "converge_tol")
    cfgs = [RunConfig(**shared, **{k: v[i] for k, v in per_run.items()}) for i in range(len(args.out))]
    for final in train_group(cfgs, args.out, quiet=args.quiet):
        print(json.dumps({k: final[k] for k in ("estimator", "diverged", "best_val_metric", "test_metric", "converged",
                                          "wall_time")}))


def cmd_gradstats(args):
    from ..engine import estimators as E
    from .gradstats import gradient_stats
    from .io import write_csv
    from .progress import Progress
    from .train import RunConfig, init_params, load_checkpoint

    task, model, _ = _run_config(RunConfig, args).build()
    ests = [E.parse_estimator(s) for s in args.estimators]
    if args.checkpoint:
        params = load_checkpoint(args.checkpoint, model, args.update)
    else:
        params = init_params(model, args.init_seed, np.float64)
    progress = Progress(args.batches, f"gradstats {args.task} {model.cell}", unit="batches", quiet=args.quiet)
    df = gradient_stats(task, model, params, ests, args.seq_len, args.batch_size, K=args.samples,
                        n_batches=args.batches, seed=args.seed, progress=progress,
                        cut_pattern=args.cut_pattern, window=args.window)
    label = args.label or (Path(args.checkpoint).stem if args.checkpoint else "init")
    keys = {"task": args.task, "cell": model.cell, "hidden": args.hidden, "seq_len": args.seq_len,
            "checkpoint": label, "progress": args.progress if args.progress is not None else np.nan,
            "seed": args.seed}
    profile = None
    if args.lagprofile_out:
        from .lagprofile import trained_lag_profile

        profile = trained_lag_profile(task, model, params, args.seq_len, args.batch_size,
                                      n_batches=args.batches, seed=args.seed)
    for i, (k, v) in enumerate(keys.items()):
        df.insert(i, k, v)
        if profile is not None:
            profile.insert(i, k, v)
    if profile is not None:
        write_csv(args.lagprofile_out, profile)
    write_csv(args.out, df)


def cmd_lagprofile(args):
    from .io import write_csv
    from .lagprofile import lag_profiles

    df = lag_profiles(args.cells, args.radii, range(args.seeds), hidden=args.hidden,
                      seq_len=args.seq_len, batch_size=args.batch_size)
    write_csv(args.out, df)


def cmd_anchor(args):
    from .anchor import run_anchor

    record = run_anchor(args.out, updates=args.updates, seed=args.seed, quiet=args.quiet)
    print(json.dumps({k: record[k] for k in ("val_perplexity", "d2l_val_perplexity", "train_perplexity",
                                              "d2l_train_perplexity", "epochs")}))


# commands whose --out is a folder (for the others it is a file)
OUT_IS_FOLDER = {"train", "anchor"}


def check_outputs(args):
    """Every output option of the command, before the command does any work."""
    from .io import check_writable

    out = getattr(args, "out", None)
    if out is not None:
        for path in out if isinstance(out, list) else [out]:  # train: one folder per run
            check_writable(path, "--out", args.command in OUT_IS_FOLDER)
    out_dir = getattr(args, "out_dir", None)
    if out_dir is not None:
        check_writable(out_dir, "--out-dir", True)
    if getattr(args, "lagprofile_out", None):
        check_writable(args.lagprofile_out, "--lagprofile-out", False)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(environ=os.environ):
    """One BLAS thread unless the environment asks for more; returns the limit set (None: left).

    The engine's GEMMs are small (B x H x H per step): extra BLAS threads buy nothing, and
    on a busy machine OpenBLAS's spinning pool cost 16 times the CPU time of one thread.
    Snakemake already sets OPENBLAS_NUM_THREADS to a rule's threads.
    """
    if any(environ.get(v) for v in BLAS_THREAD_VARIABLES):
        return None
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    return 1


def main(argv=None):
    from ..engine._malloc import tune_malloc

    tune_malloc()  # a process-wide setting: the command line's choice, not the library's
    limit_blas_threads()  # likewise
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = globals().get(f"cmd_{args.command}")
    if handler is None:
        from . import commands as study

        handler = getattr(study, f"cmd_{args.command}")
    # SIGTERM (what Snakemake and SLURM send) stops a command like Ctrl-C does
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        check_outputs(args)
        handler(args)
    except KeyboardInterrupt:
        print(f"interrupted: {args.command} stopped before finishing; files are written whole "
              "or not at all", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, old_term)
    return 0
