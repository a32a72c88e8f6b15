"""Replica benchmark (single thread, float32): R runs in one process against R runs one
after another, on the study's small shapes.

A training step is what ``train`` does per update: forward, loss, backward with the
estimator's plan, weight gradients, gradient-norm clipping and an Adam update.

- ``one after another``: R runs, each through the single-run engine path
  (``model.forward`` + ``model.loss_and_seed`` + ``gradients_from_plan``), R Adam steps;
- ``replicas``: the same R runs stacked: one ``group_loss_and_gradients`` call (one
  forward and one backward recursion for all R, one stacked GEMM per step) and one
  stacked Adam step;
- ``torch-vmap`` (if PyTorch is installed, the optional ``peer`` extra): the PyTorch way
  of training many small models at once, ``torch.func.stack_module_state`` +
  ``vmap(grad(functional_call))`` over an ensemble, same shapes, same step.

Each run has its own parameters, data and learning rate.  Times are medians of
interleaved repetitions; ratios are measured side by side in this one process.  The
clock is the process's CPU time by default (``--clock cpu``): on a shared machine the
wall clock also counts the time other processes hold the core; ``--clock wall`` for
the wall clock.

    python bench/replicas.py --quick     # under a minute
    python bench/replicas.py --replicas 16 --out results/bench/replicas.csv
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bptt import estimators as E  # noqa: E402
from bptt.engine._malloc import tune_malloc  # noqa: E402
from bptt.study.io import write_rows_csv  # noqa: E402
from bptt.study.data import make_task  # noqa: E402
import time  # noqa: E402

from timing import interleaved_times  # noqa: E402

SHAPES = {  # name: (task, cell, hidden, batch, seq_len, target speed-up of replicas)
    "influence": ("influence", "influence", 23, 1, 200, 8.0),
    "recall": ("recall", "tanh", 32, 32, 32, 2.0),
    "timemachine-tanh": ("timemachine", "tanh", 64, 32, 32, 1.5),
    "timemachine-gru": ("timemachine", "gru", 64, 32, 32, 1.5),
}
CLIP = 1.0
B1, B2, EPS = 0.9, 0.999, 1e-8


class StackedAdam:
    """Adam on (R, n_params) with a learning rate per row (train.Adam, row by row)."""

    def __init__(self, lr):
        self.lr = np.asarray(lr, dtype=np.float64)[:, None]
        self.m = self.v = None
        self.t = 0

    def step(self, theta, g):
        if self.m is None:
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)
        self.t += 1
        self.m = B1 * self.m + (1 - B1) * g
        self.v = B2 * self.v + (1 - B2) * g * g
        mhat = self.m / (1 - B1**self.t)
        vhat = self.v / (1 - B2**self.t)
        theta -= (self.lr * mhat / (np.sqrt(vhat) + EPS)).astype(theta.dtype)


def clip_rows(G):
    """Clip each row of G (R, P) to norm CLIP, in place; return the norms."""
    norms = np.linalg.norm(G, axis=1)
    over = norms > CLIP
    G[over] *= (CLIP / norms[over])[:, None]
    return norms


class Workload:
    """R runs of one shape: parameters, learning rates and pre-drawn batches per run."""

    def __init__(self, name, R, estimator, n_batches=4, seed=0):
        task_name, cell, H, B, T, self.target = SHAPES[name]
        self.name, self.R, self.T = name, R, T
        self.tokens = B * T
        self.task = make_task(task_name)
        self.model = self.task.make_model(cell, H)
        self.cell, self.H, self.B = cell, H, B
        self.est = E.parse_estimator(estimator)
        rng = np.random.default_rng(seed)
        self.theta0 = np.stack([self.model.flatten(self.model.init(rng, np.float32)) for _ in range(R)])
        self.lr = np.geomspace(1e-3, 1e-2, R)
        # batches[i] = (X (R, T, B[, D]), Y, mask): one batch per run
        self.batches = [tuple(np.stack(a) for a in zip(*(self.task.batch(rng, B, T) for _ in range(R))))
                        for _ in range(n_batches)]

    def one_after_another(self, updates):
        """Returns a function running ``updates`` steps of each run, one run after another."""
        model, est = self.model, self.est

        def run():
            for r in range(self.R):
                theta = self.theta0[r].copy()
                params = model.unflatten(theta)
                adam = StackedAdam(self.lr[r : r + 1])
                est_rng = np.random.default_rng(r)
                for u in range(updates):
                    X, Y, mask = (a[r] for a in self.batches[u % len(self.batches)])
                    with np.errstate(all="ignore"):
                        fwd = model.forward(params, X)
                        loss, seed, ro = model.loss_and_seed(params, fwd, Y, mask)
                        m, inject, reduce = est.plan(self.T, 1, est_rng)
                        g = E.gradients_from_plan(model, params, fwd, seed, ro, m, inject, reduce)
                    clip_rows(g)
                    adam.step(theta[None], g)  # a (1, P) view: the update lands in theta
        return run

    def replicas(self, updates):
        """Returns a function running ``updates`` steps of the R runs stacked."""
        model, est = self.model, self.est

        def run():
            thetas = self.theta0.copy()
            adam = StackedAdam(self.lr)
            est_rngs = [np.random.default_rng(r) for r in range(self.R)]
            for u in range(updates):
                X, Y, mask = self.batches[u % len(self.batches)]
                plans = est.plans(self.T, est_rngs)  # = [est.plan(T, 1, rng) for rng in est_rngs]
                _, G = E.group_loss_and_gradients(model, thetas, X, Y, mask, plans)
                clip_rows(G)
                adam.step(thetas, G)
        return run


def torch_ensemble(torch, w, updates):
    """``updates`` steps of the R runs as a torch.func ensemble (vmap over stacked modules)."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    V = w.model.input_size
    H, R = w.H, w.R

    class Scratch(torch.nn.Module):
        """The engine's cells in PyTorch (one-hot inputs as a row gather of W_x + b)."""

        def __init__(self, theta):
            super().__init__()
            p = w.model.unflatten(theta)
            self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(v.copy())) for k, v in p.items()})

        def forward(self, X):
            p = self.p
            if w.cell == "influence":
                A, u = (torch.tensor(a, dtype=torch.float32) for a in w.model.rnn.system())
                s = torch.ones(X.shape[1], H)
                outs = []
                for t in range(X.shape[0]):
                    s = s @ A.T + X[t, :, :1] * (p["theta"] * u)
                    outs.append(s[:, :1])
                return torch.stack(outs)
            xproj = (p["W_x"] + p["b"])[X]  # (T, B, G*H)
            h = torch.zeros(X.shape[1], H)
            outs = []
            for t in range(X.shape[0]):
                if w.cell == "tanh":
                    h = torch.tanh(xproj[t] + h @ p["W_h"])
                else:
                    zr = torch.sigmoid(xproj[t, :, : 2 * H] + h @ p["W_h"][:, : 2 * H])
                    z, r = zr[:, :H], zr[:, H:]
                    n = torch.tanh(xproj[t, :, 2 * H :] + (r * h) @ p["W_h"][:, 2 * H :])
                    h = n + z * (h - n)
                outs.append(h)
            return torch.stack(outs) @ p["W_o"] + p["b_o"]

    def loss_fn(params, buffers, X, Y, mask):
        out = functional_call(base, (params, buffers), (X,))
        wts = mask / mask.sum()
        if w.cell == "influence":
            return (0.5 * (out[..., 0] - Y[..., 0]) ** 2 * wts).sum()
        ce = torch.nn.functional.cross_entropy(out.reshape(-1, V), Y.reshape(-1), reduction="none")
        return (ce * wts.reshape(-1)).sum()

    models = [Scratch(w.theta0[r]) for r in range(R)]
    base = Scratch(w.theta0[0]).to("meta")
    batches = [tuple(torch.from_numpy(np.ascontiguousarray(a if a.dtype.kind == "i" else a.astype(np.float32)))
                     for a in b) for b in w.batches]
    lr = torch.tensor(w.lr, dtype=torch.float32)
    grad_fn = vmap(grad(loss_fn))

    def run():
        params, buffers = stack_module_state(models)
        params = {k: v.detach() for k, v in params.items()}
        m = {k: torch.zeros_like(v) for k, v in params.items()}
        v2 = {k: torch.zeros_like(v) for k, v in params.items()}
        for u in range(updates):
            X, Y, mask = batches[u % len(batches)]
            g = grad_fn(params, buffers, X, Y, mask)
            norm = torch.sqrt(sum((gk.reshape(R, -1) ** 2).sum(1) for gk in g.values()))
            scale = torch.clamp(CLIP / norm, max=1.0)
            t = u + 1
            for k in params:
                shape = (R,) + (1,) * (g[k].dim() - 1)
                gk = g[k] * scale.reshape(shape)
                m[k] = B1 * m[k] + (1 - B1) * gk
                v2[k] = B2 * v2[k] + (1 - B2) * gk * gk
                step = lr.reshape(shape) * (m[k] / (1 - B1**t)) / (torch.sqrt(v2[k] / (1 - B2**t)) + EPS)
                params[k] = params[k] - step
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer updates and repetitions (default: off)")
    ap.add_argument("--replicas", type=int, default=16, help="R, runs per group (default: %(default)s)")
    ap.add_argument("--estimator", default="full", help="estimator spec of every run (default: %(default)s)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list among %(default)s")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="process CPU time or wall time (default: %(default)s)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch ensemble even if installed")
    ap.add_argument("--out", default="results/bench/replicas.csv", help="CSV output (default: %(default)s)")
    args = ap.parse_args(argv)
    tune_malloc()
    unknown = [s for s in args.shapes.split(",") if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shapes {unknown}; valid: {', '.join(SHAPES)}")
    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            print('PyTorch not installed: no torch-vmap column (pip install -e ".[peer]")')
    updates, reps = (3, 3) if args.quick else (10, 7)
    R = args.replicas
    rows = []
    print(f"R = {R} runs, {updates} updates each, estimator {args.estimator}, single thread, float32, "
          f"{args.clock} clock")
    print(f"{'shape':18s} {'alone (s)':>10s} {'replicas (s)':>13s} {'speed-up':>9s} {'target':>7s}"
          + (f" {'torch (s)':>10s} {'vs torch':>9s}" if torch else ""))
    for name in args.shapes.split(","):
        w = Workload(name, R, args.estimator)
        fns = [w.one_after_another(updates), w.replicas(updates)]
        if torch:
            fns.append(torch_ensemble(torch, w, updates))
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        times = interleaved_times(fns, reps, clock=clock)
        t_alone, t_group = times[:2]
        row = {"shape": name, "cell": w.cell, "hidden": w.H, "batch": w.B, "seq_len": w.T, "replicas": R,
               "estimator": args.estimator, "updates": updates, "seconds_one_after_another": t_alone,
               "seconds_replicas": t_group, "speedup": t_alone / t_group, "target": w.target,
               "tokens_per_s_replicas": R * updates * w.tokens / t_group}
        line = f"{name:18s} {t_alone:10.3f} {t_group:13.3f} {t_alone / t_group:8.2f}x {w.target:6.1f}x"
        if torch:
            row["seconds_torch_vmap"] = times[2]
            row["speedup_vs_torch"] = times[2] / t_group
            line += f" {times[2]:10.3f} {times[2] / t_group:8.2f}x"
        rows.append(row)
        print(line, flush=True)
    out = Path(args.out)
    write_rows_csv(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
