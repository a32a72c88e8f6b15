"""Training runs in the estimator view (docs/design.md §4).

For a given seed every strategy starts from the same initialization and sees the
same batches in the same order; only the gradient estimate differs.  Three
independent random streams are spawned from the seed: initialization, data, and the
estimator's own randomness.

Outputs in ``out_dir``:
  curve.csv      update, tokens, train_loss (mean over the interval), train_eval_loss,
                 val_loss, val_metric, grad_norm (mean, before clipping), wall_time
  final.json     the run's configuration, final and best metrics, diverged flag,
                 wall time, tokens/s and the peak backward span (stored states)
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
from .io import interrupts_deferred, write_json, write_npz, write_rows_csv
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
        cell = "influence" if self.task == "influence" else self.cell
        return task, task.make_model(cell, self.hidden), E.parse_estimator(self.estimator)


# -- optimizers on a flat parameter vector -----------------------------------------


class SGD:
    def __init__(self, lr):
        self.lr = lr

    def step(self, theta, g):
        theta -= self.lr * g


class Adam:
    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = self.v = None
        self.t = 0

    def step(self, theta, g):
        if self.m is None:
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mhat = self.m / (1 - self.b1**self.t)
        vhat = self.v / (1 - self.b2**self.t)
        theta -= self.lr * mhat / (np.sqrt(vhat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def seed_streams(seed):
    """Independent generators (init, data, estimator) derived from one seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def init_params(model, seed, dtype):
    return model.init(seed_streams(seed)[0], DTYPES[dtype] if isinstance(dtype, str) else dtype)


def evaluate(task, model, params, batch):
    X, Y, mask = batch
    fwd = model.forward(params, X)
    loss = fwd.loss(Y, mask, model.loss)
    return loss, task.metric(loss, fwd.outputs_cm, Y, mask)


def backward_span(estimator, m):
    """Longest stretch of steps one backward pass must keep (memory in steps)."""
    if estimator.kind == "windowed":
        return min(estimator.tau, m.shape[1])
    best = 0
    for row in m:
        starts = np.flatnonzero(np.r_[True, row[1:] == 0])
        best = max(best, int(np.max(np.diff(np.r_[starts, len(row)]))))
    return best


def train(cfg: RunConfig, out_dir, quiet=False):
    """Run one configuration; write its outputs atomically; return the final record."""
    cfg.validate()
    out_dir = Path(out_dir)
    task, model, est = cfg.build()
    init_rng, data_rng, est_rng = seed_streams(cfg.seed)
    dtype = DTYPES[cfg.dtype]
    params = model.init(init_rng, dtype)
    theta = model.flatten(params)
    params = model.unflatten(theta)  # views into theta: updating theta updates params
    opt = OPTIMIZERS[cfg.optimizer](cfg.lr)
    val_set = task.eval_set(cfg.seq_len, cfg.eval_sequences, "val")
    train_set = task.eval_set(cfg.seq_len, cfg.eval_sequences, "train")
    checkpoints = sorted({int(c) for c in cfg.checkpoints})
    B = 1 if cfg.task == "influence" else cfg.batch_size
    tokens_per_update = B * cfg.seq_len

    rows, ckpts = [], {}
    progress = Progress(cfg.updates, f"train {cfg.task} {cfg.cell} {est.label} seed={cfg.seed}", quiet=quiet)
    t0 = time.perf_counter()
    diverged_at, span, fit_time = None, 0, 0.0
    interval_loss, interval_norm, n_interval = 0.0, 0.0, 0

    def record(update):
        vl, vm = evaluate(task, model, params, val_set)
        tl, _ = evaluate(task, model, params, train_set)
        rows.append({
            "update": update,
            "tokens": update * tokens_per_update,
            "train_loss": interval_loss / n_interval if n_interval else np.nan,
            "train_eval_loss": tl,
            "val_loss": vl,
            "val_metric": vm,
            "grad_norm": interval_norm / n_interval if n_interval else np.nan,
            "wall_time": time.perf_counter() - t0,
        })
        return vl, vm

    if 0 in checkpoints:
        ckpts[0] = theta.copy()
    record(0)
    for u in range(1, cfg.updates + 1):
        batch = task.batch(data_rng, B, cfg.seq_len)
        ts = time.perf_counter()
        with np.errstate(all="ignore"):
            fwd = model.forward(params, batch[0])
            loss, seed, ro = model.loss_and_seed(params, fwd, batch[1], batch[2])
            m, inject, reduce = est.plan(cfg.seq_len, 1, est_rng)
            g = E.gradients_from_plan(model, params, fwd, seed, ro, m, inject, reduce)[0]
            norm = float(np.linalg.norm(g))
        span = max(span, backward_span(est, m))
        if not (np.isfinite(loss) and np.isfinite(norm)):
            diverged_at = u
            break
        if cfg.clip > 0 and norm > cfg.clip:
            g *= cfg.clip / norm
        opt.step(theta, g)
        fit_time += time.perf_counter() - ts
        interval_loss += loss
        interval_norm += norm
        n_interval += 1
        if u in checkpoints:
            ckpts[u] = theta.copy()
        if u % cfg.eval_every == 0 or u == cfg.updates:
            with np.errstate(all="ignore"):
                vl, vm = record(u)
            interval_loss, interval_norm, n_interval = 0.0, 0.0, 0
            if not np.isfinite(vl):
                diverged_at = u
                break
        progress.update(u, loss=float(loss), tok_s=tokens_per_update * u / max(fit_time, 1e-9))

    wall = time.perf_counter() - t0
    last = rows[-1]
    val_metrics = [r["val_metric"] for r in rows]
    done = diverged_at is None
    final = {
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
        "updates_done": int(last["update"]) if done else diverged_at - 1,
        "final_val_loss": float(last["val_loss"]) if done else float("nan"),
        "final_val_metric": float(last["val_metric"]) if done else float("nan"),
        "final_train_eval_loss": float(last["train_eval_loss"]) if done else float("nan"),
        "best_val_metric": float(np.nanmax(val_metrics) if task.higher_is_better
                                 else np.nanmin(val_metrics)),
        "wall_time": wall,
        "fit_time": fit_time,
        "tokens_per_s": tokens_per_update * (u if done else u - 1) / max(fit_time, 1e-9),
        "peak_backward_steps": span,
        "peak_stored_states": span * B,
        "init_val_metric": float(rows[0]["val_metric"]),
        "null_reasons": _null_reasons(task, diverged_at),
    }
    with interrupts_deferred():  # all outputs or none
        for u, th in ckpts.items():
            write_npz(out_dir / f"checkpoint_{u}.npz", theta=th)
        write_npz(out_dir / "params.npz", theta=theta)
        write_rows_csv(out_dir / "curve.csv", rows)
        write_json(out_dir / "final.json", final)
    progress.update(cfg.updates if done else diverged_at, force=True,
                    diverged=not done, val_metric=final["final_val_metric"])
    return final


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
