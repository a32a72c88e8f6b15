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

Training to convergence: minibatches come from the task's epoch-style stream
(``task.batches``); every ``eval_every`` updates the run is evaluated on the whole
validation split and the best checkpoint (best validation metric) is kept; with
``patience`` > 0 a run stops after that many evaluations without improvement, else
it uses its whole budget of ``updates``.  The run's result is its best checkpoint,
scored once on the test split.  ``converged`` says whether the run had stopped
improving: stopped by patience, or a relative improvement of its best validation
metric below ``converge_tol`` over the last ``converge_window`` of the updates it
ran.  Randomized cuts are drawn per sequence (``cut_pattern``) and the realised costs
of every update's plan are recorded (``costs.plan_costs``), as is the fraction of
updates that clipping rescaled.

Outputs in a run's folder:
  curve.csv      update, tokens, train_loss (mean over the interval), train_eval_loss,
                 val_loss, val_metric, grad_norm (mean, before clipping), wall_time
                 (seconds since the group started)
  final.json     the run's configuration; final (last evaluation), best (checkpoint)
                 and test metrics; stop reason, converged flag, clip fraction, realised
                 costs; diverged flag, its share of the group's wall and fit time,
                 tokens/s and the group size
  params.npz     the best checkpoint (the run's result; for a diverged run the best
                 before it diverged)
  checkpoints.npz  the parameters at the requested updates, one array ``update_<u>`` each
                 (a run that stopped earlier: its parameters at the stop); only if any
A non-finite loss or gradient stops the run with ``diverged: true``; it is a result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..engine import estimators as E
from ..engine.costs import CostTally, plan_costs
from .data import make_task
from ..engine.initialization import check_init, initialize
from .io import check_writable, interrupts_deferred, write_json, write_npz, write_rows_csv
from .progress import Progress

DTYPES = {"float32": np.float32, "float64": np.float64}
CUT_PATTERNS = ("per_sequence", "per_batch")


@dataclass
class RunConfig:
    """One training run. Task parameters only apply to their task."""

    task: str = "timemachine"
    split: str = "d2l"  # timemachine: the corpus blocks, d2l (d2l's sizes) | book (80/10/10)
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
    updates: int = 300
    eval_every: int = 25
    eval_sequences: int = 64
    checkpoints: list = field(default_factory=list)
    seed: int = 0
    dtype: str = "float32"
    init: str = "default"  # default | normal (d2l: N(0, init_scale²) weights, zero biases)
    init_scale: float = 0.01
    cut_pattern: str = "per_sequence"  # per_sequence | per_batch: who shares randomized cuts
    patience: int = 0  # evaluations without improvement before stopping (0: never stop early)
    converge_window: float = 0.2  # last fraction of the updates run that must not improve ...
    converge_tol: float = 0.01  # ... by this relative amount for the run to count as converged

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
        check_init(self.init, self.init_scale)
        if self.cut_pattern not in CUT_PATTERNS:
            raise ValueError(f"unknown cut_pattern {self.cut_pattern!r}; valid: {', '.join(CUT_PATTERNS)}")
        if int(self.patience) != self.patience or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: no early stopping), got {self.patience}")
        if not 0 < self.converge_window <= 1:
            raise ValueError(f"converge_window must lie in (0, 1], got {self.converge_window}")
        if not self.converge_tol >= 0:
            raise ValueError(f"converge_tol must be >= 0, got {self.converge_tol}")
        bad = [c for c in self.checkpoints if not 0 <= int(c) <= self.updates]
        if bad:
            raise ValueError(f"checkpoints {bad} outside 0..updates={self.updates}")
        E.parse_estimator(self.estimator)
        return self

    def task_params(self):
        return {
            "timemachine": {"split": self.split},
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


def init_params(model, seed, dtype, init="default", init_scale=0.01):
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    return initialize(model, seed_streams(seed)[0], dtype, init, init_scale)


def eval_sets(task, T, n):
    """{split: (X, Y, mask)}: whole splits, or n sampled sequences where the task samples."""
    n = n if task.sampled_eval_sets else None
    return {split: task.eval_set(T, n, split) for split in ("train", "val", "test")}


def evaluate(task, model, thetas, eval_set):
    """Losses (R,) of the runs ``thetas`` on an evaluation set, and their class-major outputs.

    A task with ``eval_chunk_tokens`` scores a set of more tokens than that in chunks of
    whole windows (bounded memory: the forward pass of a group stores every state) and
    returns their weighted mean loss, which is the set's loss, and no outputs (such a
    task's metric is a function of the loss).  A smaller set, and every set of the
    other tasks, is scored in one pass.
    """
    X, Y, mask = eval_set
    limit = task.eval_chunk_tokens
    if limit is None or mask.size <= limit:
        return E.group_evaluate(model, thetas, X, Y, mask)
    T, n = mask.shape
    step = max(1, limit // T)
    total, weight = 0.0, 0.0
    for lo in range(0, n, step):
        cols = slice(lo, lo + step)
        losses, _ = E.group_evaluate(model, thetas, X[:, cols], Y[:, cols], mask[:, cols])
        w = float(mask[:, cols].sum())
        total, weight = total + losses * w, weight + w
    return total / weight, None


def improvement(before, after, higher_is_better):
    """Relative improvement from ``before`` to ``after`` (positive: better)."""
    gain = (after - before) if higher_is_better else (before - after)
    return gain / max(abs(before), 1e-12)


def convergence(rows, higher_is_better, window, tol, stop_reason):
    """(converged, relative improvement of the best validation metric over the window).

    The window is the last ``window`` fraction of the updates the run did; a run stopped
    by patience has stopped improving by construction, a diverged one has not converged.
    """
    updates = np.array([r["update"] for r in rows], dtype=float)
    metric = np.array([r["val_metric"] for r in rows], dtype=float)
    pick = np.fmax.accumulate if higher_is_better else np.fmin.accumulate
    best = pick(np.where(np.isfinite(metric), metric, np.nan))
    start = updates[-1] * (1 - window)
    before = best[updates <= start][-1] if (updates <= start).any() else best[0]
    late = float(improvement(before, best[-1], higher_is_better))
    if stop_reason == "diverged" or not np.isfinite(late):
        return False, late
    return stop_reason == "patience" or late < tol, late


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
    checkpoints: dict  # {update: (P,)} checkpoints.npz, arrays update_<update>


def fit(cfgs, quiet=False):
    """Train a group of runs in lockstep; return one ``Run`` per configuration.

    Every run keeps its own three seed streams (init, data, estimator), optimizer
    state, clipping, evaluations, best checkpoint and checkpoints, exactly as if
    trained alone; the model math of all runs still training goes through one call of
    ``group_loss_and_gradients`` per update (and ``group_evaluate`` per evaluation).
    A run whose loss or gradient turns non-finite is frozen at its last finite
    parameters and recorded as diverged; a run out of patience stops; the others go on.
    """
    cfgs = check_group(cfgs)
    first = cfgs[0]
    R = len(cfgs)
    task, model, _ = first.build()
    ests = [E.parse_estimator(c.estimator) for c in cfgs]
    streams = [seed_streams(c.seed) for c in cfgs]
    est_rngs = [s[2] for s in streams]
    dtype = DTYPES[first.dtype]
    thetas = np.stack([model.flatten(initialize(model, s[0], dtype, c.init, c.init_scale))
                       for s, c in zip(streams, cfgs)])
    opt = OPTIMIZERS[first.optimizer]([c.lr for c in cfgs], thetas.shape, dtype)
    clips = [c.clip for c in cfgs]
    T, updates, eval_every = first.seq_len, first.updates, first.eval_every
    sets = eval_sets(task, T, first.eval_sequences)
    val_set, train_set = sets["val"], sets["train"]
    wanted = [{int(c) for c in cfg.checkpoints} for cfg in cfgs]
    B = task.batch_size or first.batch_size
    data = [task.batches(s[1], B, T) for s in streams]
    per_sequence = [c.cut_pattern == "per_sequence" for c in cfgs]
    better = np.greater if task.higher_is_better else np.less

    rows = [[] for _ in range(R)]
    ckpts = [{} for _ in range(R)]
    diverged_at = [None] * R
    stopped_at = [None] * R  # out of patience
    best = [None] * R  # (update, val metric, theta) of the best evaluation
    waited = [0] * R  # evaluations since the best one
    tallies = [CostTally() for _ in range(R)]
    clipped = [0] * R
    tokens = [0] * R
    fit_time = [0.0] * R
    interval_loss, interval_norm, n_interval = [0.0] * R, [0.0] * R, [0] * R
    label = f"train {first.task} {model.cell} " + (
        f"{ests[0].label} seed={first.seed}" if R == 1 else f"group of {R}")
    progress = Progress(updates, label, quiet=quiet)
    t0 = time.perf_counter()

    def record(update, active):
        """Evaluate the runs ``active``; append their curve rows; keep the best checkpoints;
        return their val losses."""
        sub = thetas if len(active) == R else thetas[active]
        with np.errstate(all="ignore"):
            val_loss, val_out = evaluate(task, model, sub, val_set)
            train_loss, _ = evaluate(task, model, sub, train_set)
        now = time.perf_counter() - t0
        for i, r in enumerate(active):
            n = n_interval[r]
            vl, tl = float(val_loss[i]), float(train_loss[i])
            vm = task.metric(vl, None if val_out is None else val_out[i], val_set[1], val_set[2])
            rows[r].append({
                "update": update,
                "tokens": tokens[r],
                "train_loss": interval_loss[r] / n if n else np.nan,
                "train_eval_loss": tl,
                "val_loss": vl,
                "val_metric": vm,
                "grad_norm": interval_norm[r] / n if n else np.nan,
                "wall_time": now,
            })
            interval_loss[r], interval_norm[r], n_interval[r] = 0.0, 0.0, 0
            if np.isfinite(vl) and (best[r] is None or better(vm, best[r][1])):
                best[r] = (update, vm, thetas[r].copy())
                waited[r] = 0
            else:
                waited[r] += 1
        return val_loss

    cost_cache = {}  # a deterministic plan costs the same every update of a batch size

    def plans_and_costs(active, Bu):
        """Every active run's plan, drawn from its own stream (runs sharing an estimator
        and cut pattern in one ``Estimator.plans`` call), with its costs tallied."""
        plans = {}
        together = {}
        for r in active:
            together.setdefault((cfgs[r].estimator, per_sequence[r]), []).append(r)
        for (_, per_seq), rs in together.items():
            drawn = ests[rs[0]].plans(T, [est_rngs[r] for r in rs], Bu if per_seq else None)
            plans.update(zip(rs, drawn))
        for r in active:
            if ests[r].deterministic:
                key = (cfgs[r].estimator, Bu)
                if key not in cost_cache:
                    cost_cache[key] = plan_costs(plans[r], Bu)
                tallies[r].add(cost_cache[key])
            else:
                tallies[r].add(plan_costs(plans[r], Bu))
        return [plans[r] for r in active]

    for r in range(R):
        if 0 in wanted[r]:
            ckpts[r][0] = thetas[r].copy()
    active = list(range(R))
    record(0, active)
    for u in range(1, updates + 1):
        batches = [next(data[r]) for r in active]
        X, Y, mask = (np.stack(parts) for parts in zip(*batches))
        Bu = X.shape[2]  # the last minibatch of an epoch may be smaller
        ts = time.perf_counter()
        everyone = len(active) == R
        plans = plans_and_costs(active, Bu)
        with np.errstate(all="ignore"):
            losses, G = E.group_loss_and_gradients(
                model, thetas if everyone else thetas[active], X, Y, mask, plans)
            norms = [float(np.linalg.norm(g)) for g in G]
        scale = np.ones((len(active), 1), dtype=dtype)
        keep = []
        for i, r in enumerate(active):
            if not (np.isfinite(losses[i]) and np.isfinite(norms[i])):
                diverged_at[r] = u
                continue
            keep.append(i)
            if clips[r] > 0 and norms[i] > clips[r]:
                scale[i] = clips[r] / norms[i]
                clipped[r] += 1
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
            tokens[r] += Bu * T
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
                elif cfgs[r].patience and waited[r] >= cfgs[r].patience and u < updates:
                    stopped_at[r] = u
            active = [r for r in active if diverged_at[r] is None and stopped_at[r] is None]
        if not active:
            break
        progress.update(u, loss=float(np.mean([interval_loss[r] for r in active])),
                        tok_s=sum(tokens) / max(sum(fit_time), 1e-9))

    # a run that stopped (patience or divergence) before a requested checkpoint still
    # writes it: its parameters where it stopped, so the checkpoint files always exist
    for r in range(R):
        for u in wanted[r] - ckpts[r].keys():
            ckpts[r][u] = thetas[r].copy()
    # every run's result is its best checkpoint, scored once on the test split
    best_thetas = np.stack([b[2] if b is not None else thetas[r] for r, b in enumerate(best)])
    test_set = sets["test"]
    with np.errstate(all="ignore"):
        test_loss, test_out = evaluate(task, model, best_thetas, test_set)
    wall = time.perf_counter() - t0
    runs = []
    for r, cfg in enumerate(cfgs):
        test = {"test_loss": float(test_loss[r]),
                "test_metric": float(task.metric(test_loss[r], None if test_out is None else test_out[r],
                                                 test_set[1], test_set[2]))}
        final = final_record(cfg, task, model, ests[r], rows[r], diverged_at[r], stopped_at[r],
                             best[r], test, tallies[r], clipped[r], tokens[r], fit_time[r], wall, R)
        runs.append(Run(final, rows[r], best_thetas[r].copy(), ckpts[r]))
    n_div = sum(d is not None for d in diverged_at)
    progress.update(updates, force=True, diverged=n_div,
                    test_metric=float(np.nanmean([r.final["test_metric"] for r in runs])))
    return runs


def final_record(cfg, task, model, est, rows, diverged_at, stopped_at, best, test, tally, clipped,
                 tokens, fit_time, group_wall, group_size):
    """The final.json of one run.

    In a group of R runs, ``wall_time`` is the run's share ``group_wall / R`` and
    ``fit_time`` the sum of its shares of the updates it took part in, so that the
    times of a study's runs add up to the time spent.
    """
    last = rows[-1]
    done = diverged_at is None
    updates_done = diverged_at - 1 if not done else int(last["update"])
    stop_reason = "diverged" if not done else ("patience" if stopped_at is not None else "budget")
    converged, late = convergence(rows, task.higher_is_better, cfg.converge_window, cfg.converge_tol,
                                  stop_reason)
    best_update, best_metric, best_theta = best if best is not None else (None, float("nan"), None)
    best_row = next((r for r in rows if r["update"] == best_update), None)
    costs = tally.summary()
    B = task.batch_size or cfg.batch_size
    return {
        "config": asdict(cfg),
        "task": cfg.task,
        "cell": model.cell,
        "data": task.describe(),  # the task's data (timemachine: its split and block sizes)
        **est.identity(),  # estimator, spec, kind, strategy, tau, schedule, schedule_params
        "n_params": model.n_params,
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "chance": task.chance,
        "diverged": not done,
        "diverged_at": diverged_at,
        "stop_reason": stop_reason,
        "stopped_at": stopped_at,
        "updates_done": updates_done,
        "epochs_done": (tokens / cfg.seq_len / task.windows_per_epoch(cfg.seq_len)
                        if task.windows_per_epoch(cfg.seq_len) else None),
        "converged": bool(converged),
        "late_improvement": late,
        "final_val_loss": float(last["val_loss"]) if done else float("nan"),
        "final_val_metric": float(last["val_metric"]) if done else float("nan"),
        "final_train_eval_loss": float(last["train_eval_loss"]) if done else float("nan"),
        "best_update": best_update,
        "best_val_metric": float(best_metric),
        "best_val_loss": float(best_row["val_loss"]) if best_row else float("nan"),
        "best_train_eval_loss": float(best_row["train_eval_loss"]) if best_row else float("nan"),
        **test,
        "clip_fraction": clipped / max(updates_done, 1),
        **costs,
        **task.describe_params(best_theta, cfg.seq_len),
        "wall_time": group_wall / group_size,
        "fit_time": fit_time,
        "tokens_per_s": tokens / max(fit_time, 1e-9),
        # kept for the tables: the longest segment and the peak store over the run
        "peak_backward_steps": costs["max_longest_segment"],
        "peak_stored_states": costs["max_peak_stored_steps"],
        "batch_size": B,
        "init_val_metric": float(rows[0]["val_metric"]),
        "group_size": group_size,
        "null_reasons": _null_reasons(task, diverged_at),
    }


def write_run(run: Run, out_dir):
    """Write one run's folder atomically: checkpoints, params.npz, curve.csv, final.json."""
    out_dir = Path(out_dir)
    if run.checkpoints:
        write_npz(out_dir / "checkpoints.npz",
                  **{f"update_{u}": th for u, th in sorted(run.checkpoints.items())})
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


def load_checkpoint(path, model, update=None):
    """Parameters dict from ``params.npz``, or from ``checkpoints.npz`` at ``update``."""
    with np.load(path) as z:
        if update is None and "theta" in z:
            theta = z["theta"]
        else:
            key = f"update_{update}"
            if key not in z:
                have = sorted(int(k.removeprefix("update_")) for k in z if k.startswith("update_"))
                raise ValueError(f"checkpoint file {path} has no update {update}; it has {have}")
            theta = z[key]
    if theta.size != model.n_params:
        raise ValueError(f"checkpoint {path} has {theta.size} parameters, model has {model.n_params}")
    return model.unflatten(theta.copy())
