"""Training runs in the estimator view (docs/design.md §4), trained alone or as a group.

For a given seed every strategy starts from the same initialization and sees the
same batches in the same order; only the gradient estimate differs.  Three
independent random streams are spawned from the seed: initialization, data, and the
estimator's own randomness.

``fit(cfgs)`` trains a group of runs of one task and model shape in lockstep (each
with its own streams, learning rate, clipping, estimator and optimizer state; the
model math of all of them in one ``group_loss_and_gradients`` call per update) and
returns the runs; ``write_run`` writes one run's folder; ``train`` is a group of one.
A run's numbers do not depend on the group it was trained in.

Outputs in a run's folder:
  curve.csv      update, tokens, train_loss (mean over the interval), train_eval_loss,
                 val_loss, val_metric, grad_norm (mean, before clipping), wall_time
                 (seconds since the group started)
  final.json     the run's configuration, final and best metrics, diverged flag, its
                 share of the group's wall and fit time, tokens/s, the group size and
                 the peak backward span (stored states)
  params.npz     the final parameters (the last finite ones if the run diverged)
  checkpoint_<update>.npz   parameters at the requested updates
A non-finite loss or gradient stops the run with ``diverged: true``; it is a result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import estimators as E
from .data import make_task
from .io import check_writable, interrupts_deferred, write_json, write_npz, write_rows_csv
from .progress import Progress

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class RunConfig:
    """One training run. Task parameters only apply to their task."""

    task: str = "timemachine"
    lag: int = 10  # recall: delay L
    alphabet: int = 8  # recall: number of symbols
    units: int = 23  # influence: n
    positive: int = 10  # influence: p
    cell: str = "tanh"
    hidden: int = 64
    seq_len: int = 64
    batch_size: int = 32
    estimator: str = "full"
    optimizer: str = "adam"
    lr: float = 0.005
    clip: float = 1.0
    updates: int = 500
    eval_every: int = 25
    eval_sequences: int = 64
    checkpoints: list = field(default_factory=list)
    seed: int = 0
    dtype: str = "float32"

    def validate(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        for name in ("hidden", "seq_len", "batch_size", "updates", "eval_every", "eval_sequences"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.clip < 0:
            raise ValueError(f"clip must be >= 0 (0 disables clipping), got {self.clip}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        bad = [c for c in self.checkpoints if not 0 <= int(c) <= self.updates]
        if bad:
            raise ValueError(f"checkpoints {bad} outside 0..updates={self.updates}")
        E.parse_estimator(self.estimator)
        return self

    def task_params(self):
        return {
            "recall": {"lag": self.lag, "alphabet": self.alphabet},
            "influence": {"units": self.units, "positive": self.positive},
        }.get(self.task, {})

    def build(self):
        """(task, model, estimator) for this configuration."""
        task = make_task(self.task, **self.task_params())
        model = task.make_model(task.cell or self.cell, self.hidden)
        return task, model, E.parse_estimator(self.estimator)


# -- optimizers on stacked parameter vectors (R, P), one row per run ----------------
# Each row is updated by exactly the elementwise expressions of one run alone (the
# learning rate cast to the parameters' dtype, as numpy does with a Python float), so
# a run's numbers do not depend on the group it is trained in.


class SGD:
    def __init__(self, lrs, shape, dtype):
        self.lr = np.asarray(lrs, dtype=dtype)[:, None]

    def step(self, thetas, G, rows):
        """``thetas[rows] -= lr g``; ``rows`` a slice or index array, G (len(rows), P)."""
        thetas[rows] -= self.lr[rows] * G


class Adam:
    def __init__(self, lrs, shape, dtype, b1=0.9, b2=0.999, eps=1e-8):
        self.lr = np.asarray(lrs, dtype=dtype)[:, None]
        self.b1, self.b2, self.eps = b1, b2, eps
        self.m, self.v = np.zeros(shape, dtype), np.zeros(shape, dtype)
        # every run still training has taken every step so far: one step count for all
        self.t = 0

    def step(self, thetas, G, rows):
        self.t += 1
        m = self.b1 * self.m[rows] + (1 - self.b1) * G
        v = self.b2 * self.v[rows] + (1 - self.b2) * G * G
        self.m[rows], self.v[rows] = m, v
        mhat = m / (1 - self.b1**self.t)
        vhat = v / (1 - self.b2**self.t)
        thetas[rows] -= self.lr[rows] * mhat / (np.sqrt(vhat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def seed_streams(seed):
    """Independent generators (init, data, estimator) derived from one seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def init_params(model, seed, dtype):
    return model.init(seed_streams(seed)[0], DTYPES[dtype] if isinstance(dtype, str) else dtype)


# -- a group of runs trained in lockstep --------------------------------------------

# What the runs of one group must share: one task, one model, one batch shape, one
# schedule of updates and evaluations. Seeds, learning rates, clipping, estimators and
# checkpoints are free per run.
GROUP_KEYS = ("task", "cell", "hidden", "seq_len", "batch_size", "optimizer", "updates",
              "eval_every", "eval_sequences", "dtype")


def check_group(cfgs):
    """Validate every configuration and that they can share one group; return them."""
    cfgs = list(cfgs)
    if not cfgs:
        raise ValueError("a group needs at least one run")
    for cfg in cfgs:
        cfg.validate()
    first = cfgs[0]
    for key in GROUP_KEYS:
        values = [getattr(c, key) for c in cfgs]
        if any(v != values[0] for v in values):
            raise ValueError(f"runs of one group must share {key}; got {sorted(set(map(str, values)))}")
    if any(c.task_params() != first.task_params() for c in cfgs):
        raise ValueError(f"runs of one group must share the {first.task} task's parameters; "
                         f"got {[c.task_params() for c in cfgs]}")
    return cfgs


@dataclass
class Run:
    """One finished run of a group: what ``write_run`` puts into its folder."""

    final: dict  # final.json
    rows: list  # curve.csv, one dict per evaluation
    theta: np.ndarray  # (P,) params.npz: the last finite parameters
    checkpoints: dict  # {update: (P,)} checkpoint_<update>.npz


def fit(cfgs, quiet=False):
    """Train a group of runs in lockstep; return one ``Run`` per configuration.

    Every run keeps its own three seed streams (init, data, estimator), optimizer
    state, clipping, evaluations and checkpoints, exactly as if trained alone; the
    model math of all runs still training goes through one call of
    ``group_loss_and_gradients`` per update (and ``group_evaluate`` per evaluation).
    A run whose loss or gradient turns non-finite is frozen at its last finite
    parameters and recorded as diverged; the others go on.
    """
    cfgs = check_group(cfgs)
    first = cfgs[0]
    R = len(cfgs)
    task, model, _ = first.build()
    ests = [E.parse_estimator(c.estimator) for c in cfgs]
    streams = [seed_streams(c.seed) for c in cfgs]
    data_rngs = [s[1] for s in streams]
    est_rngs = [s[2] for s in streams]
    dtype = DTYPES[first.dtype]
    thetas = np.stack([model.flatten(model.init(s[0], dtype)) for s in streams])
    opt = OPTIMIZERS[first.optimizer]([c.lr for c in cfgs], thetas.shape, dtype)
    clips = [c.clip for c in cfgs]
    T, updates, eval_every = first.seq_len, first.updates, first.eval_every
    val_set = task.eval_set(T, first.eval_sequences, "val")
    train_set = task.eval_set(T, first.eval_sequences, "train")
    wanted = [{int(c) for c in cfg.checkpoints} for cfg in cfgs]
    B = task.batch_size or first.batch_size
    tokens_per_update = B * T

    rows = [[] for _ in range(R)]
    ckpts = [{} for _ in range(R)]
    diverged_at = [None] * R
    span = [0] * R
    fit_time = [0.0] * R
    interval_loss, interval_norm, n_interval = [0.0] * R, [0.0] * R, [0] * R
    label = f"train {first.task} {model.cell} " + (
        f"{ests[0].label} seed={first.seed}" if R == 1 else f"group of {R}")
    progress = Progress(updates, label, quiet=quiet)
    t0 = time.perf_counter()

    def record(update, active):
        """Evaluate the runs ``active``; append their curve rows; return their val losses."""
        sub = thetas if len(active) == R else thetas[active]
        with np.errstate(all="ignore"):
            val_loss, val_out = E.group_evaluate(model, sub, *val_set)
            train_loss, _ = E.group_evaluate(model, sub, *train_set)
        now = time.perf_counter() - t0
        for i, r in enumerate(active):
            n = n_interval[r]
            vl, tl = float(val_loss[i]), float(train_loss[i])
            rows[r].append({
                "update": update,
                "tokens": update * tokens_per_update,
                "train_loss": interval_loss[r] / n if n else np.nan,
                "train_eval_loss": tl,
                "val_loss": vl,
                "val_metric": task.metric(vl, val_out[i], val_set[1], val_set[2]),
                "grad_norm": interval_norm[r] / n if n else np.nan,
                "wall_time": now,
            })
            interval_loss[r], interval_norm[r], n_interval[r] = 0.0, 0.0, 0
        return val_loss

    for r in range(R):
        if 0 in wanted[r]:
            ckpts[r][0] = thetas[r].copy()
    active = list(range(R))
    record(0, active)
    for u in range(1, updates + 1):
        batches = [task.batch(data_rngs[r], B, T) for r in active]
        X, Y, mask = (np.stack(parts) for parts in zip(*batches))
        ts = time.perf_counter()
        everyone = len(active) == R
        plans = [ests[r].plan(T, 1, est_rngs[r]) for r in active]
        with np.errstate(all="ignore"):
            losses, G = E.group_loss_and_gradients(
                model, thetas if everyone else thetas[active], X, Y, mask, plans)
            norms = [float(np.linalg.norm(g)) for g in G]
        scale = np.ones((len(active), 1), dtype=dtype)
        keep = []
        for i, r in enumerate(active):
            span[r] = max(span[r], ests[r].span(plans[i][0]))
            if not (np.isfinite(losses[i]) and np.isfinite(norms[i])):
                diverged_at[r] = u
                continue
            keep.append(i)
            if clips[r] > 0 and norms[i] > clips[r]:
                scale[i] = clips[r] / norms[i]
        with np.errstate(over="ignore", invalid="ignore"):  # a huge step is data, too
            if len(keep) == len(active):
                G *= scale
                opt.step(thetas, G, slice(None) if everyone else active)
            elif keep:
                opt.step(thetas, G[keep] * scale[keep], [active[i] for i in keep])
        share = (time.perf_counter() - ts) / max(len(keep), 1)
        for i in keep:
            r = active[i]
            fit_time[r] += share
            interval_loss[r] += float(losses[i])
            interval_norm[r] += norms[i]
            n_interval[r] += 1
            if u in wanted[r]:
                ckpts[r][u] = thetas[r].copy()
        active = [active[i] for i in keep]
        if active and (u % eval_every == 0 or u == updates):
            val_loss = record(u, active)
            for i, r in enumerate(list(active)):
                if not np.isfinite(val_loss[i]):
                    diverged_at[r] = u
            active = [r for r in active if diverged_at[r] is None]
        if not active:
            break
        progress.update(u, loss=float(np.mean([interval_loss[r] for r in active])),
                        tok_s=tokens_per_update * u * len(active) / max(sum(fit_time), 1e-9))

    wall = time.perf_counter() - t0
    runs = []
    for r, cfg in enumerate(cfgs):
        final = final_record(cfg, task, model, ests[r], rows[r], diverged_at[r], span[r] , B,
                             fit_time[r], wall, R)
        runs.append(Run(final, rows[r], thetas[r].copy(), ckpts[r]))
    n_div = sum(d is not None for d in diverged_at)
    progress.update(updates, force=True, diverged=n_div,
                    val_metric=float(np.nanmean([r.final["final_val_metric"] for r in runs]))
                    if n_div < R else float("nan"))
    return runs


def final_record(cfg, task, model, est, rows, diverged_at, span, B, fit_time, group_wall, group_size):
    """The final.json of one run.

    In a group of R runs, ``wall_time`` is the run's share ``group_wall / R`` and
    ``fit_time`` the sum of its shares of the updates it took part in, so that the
    times of a study's runs add up to the time spent.
    """
    last = rows[-1]
    val_metrics = [r["val_metric"] for r in rows]
    done = diverged_at is None
    updates_done = int(last["update"]) if done else diverged_at - 1
    return {
        "config": asdict(cfg),
        "task": cfg.task,
        "cell": model.cell,
        "estimator": est.label,
        "estimator_kind": est.kind,
        "n_params": model.n_params,
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "chance": task.chance,
        "diverged": not done,
        "diverged_at": diverged_at,
        "updates_done": updates_done,
        "final_val_loss": float(last["val_loss"]) if done else float("nan"),
        "final_val_metric": float(last["val_metric"]) if done else float("nan"),
        "final_train_eval_loss": float(last["train_eval_loss"]) if done else float("nan"),
        "best_val_metric": float(np.nanmax(val_metrics) if task.higher_is_better
                                 else np.nanmin(val_metrics)),
        "wall_time": group_wall / group_size,
        "fit_time": fit_time,
        "tokens_per_s": B * cfg.seq_len * updates_done / max(fit_time, 1e-9),
        "peak_backward_steps": span,
        "peak_stored_states": span * B,
        "init_val_metric": float(rows[0]["val_metric"]),
        "group_size": group_size,
        "null_reasons": _null_reasons(task, diverged_at),
    }


def write_run(run: Run, out_dir):
    """Write one run's folder atomically: checkpoints, params.npz, curve.csv, final.json."""
    out_dir = Path(out_dir)
    for u, th in run.checkpoints.items():
        write_npz(out_dir / f"checkpoint_{u}.npz", theta=th)
    write_npz(out_dir / "params.npz", theta=run.theta)
    write_rows_csv(out_dir / "curve.csv", run.rows)
    write_json(out_dir / "final.json", run.final)


def train_group(cfgs, out_dirs, quiet=False):
    """Train the runs ``cfgs`` as one group; write each into its folder; return the finals."""
    cfgs, out_dirs = list(cfgs), [Path(d) for d in out_dirs]
    if len(cfgs) != len(out_dirs):
        raise ValueError(f"{len(cfgs)} runs but {len(out_dirs)} output folders")
    if len(set(out_dirs)) != len(out_dirs):
        raise ValueError("two runs of the group write the same output folder")
    check_group(cfgs)
    for d in out_dirs:
        check_writable(d, "output folder", folder=True)
    runs = fit(cfgs, quiet=quiet)
    with interrupts_deferred():  # every run's files, or none
        for run, d in zip(runs, out_dirs):
            write_run(run, d)
    return [run.final for run in runs]


def train(cfg: RunConfig, out_dir, quiet=False):
    """One run: a group of one. Writes its outputs atomically; returns the final record."""
    return train_group([cfg], [out_dir], quiet=quiet)[0]


def _null_reasons(task, diverged_at):
    """Why a value of final.json is null (JSON has no NaN; see io.write_json)."""
    reasons = {}
    if diverged_at is not None:
        why = f"diverged at update {diverged_at} (non-finite loss or gradient)"
        reasons = dict.fromkeys(("final_val_loss", "final_val_metric", "final_train_eval_loss"), why)
    if not np.isfinite(task.chance):
        reasons["chance"] = f"the {task.name} task has no chance level (its metric is the loss)"
    return reasons


def load_checkpoint(path, model):
    """Parameters dict from a ``checkpoint_<u>.npz`` written by ``train``."""
    with np.load(path) as z:
        theta = z["theta"]
    if theta.size != model.n_params:
        raise ValueError(f"checkpoint {path} has {theta.size} parameters, model has {model.n_params}")
    return model.unflatten(theta.copy())
