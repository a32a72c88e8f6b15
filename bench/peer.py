"""Peer benchmark: the bptt engine against the PyTorch implementations people use.

Same shapes, same data, same step (forward + cross-entropy + backward + gradient
clipping + SGD update), single thread, float32, median of several repetitions:

- ``bptt``: this project's numpy engine;
- ``torch-scratch``: d2l's RNNScratch / GRUScratch with autograd (token ids made
  one-hot inside the forward and one matmul per step on them, as the book writes it);
- ``torch-nn``: ``torch.nn.RNN`` / ``torch.nn.GRU`` (fused kernels; note that
  nn.GRU applies the reset gate after the recurrent product, a different cell).

Workloads only this project's design can speed up:
- K randomized-truncation gradient samples at the same parameters: bptt does one
  forward and one batched backward; PyTorch does K autograd passes whose recurrent
  edges are scaled by a gradient hook;
- a full sweep of regular truncation lengths τ: bptt shares one forward pass.

Also the achieved GFLOP/s of bptt's recurrent loops against a measured single-thread
GEMM peak.

    pip install -e ".[peer]"        # CPU wheel: pip install torch==2.13.0
    python bench/peer.py --quick    # under a minute
    python bench/peer.py --out results/bench/peer.csv
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bptt import Model  # noqa: E402
from bptt import estimators as E  # noqa: E402
from bptt.engine._malloc import tune_malloc  # noqa: E402
from bptt.study.io import write_rows_csv  # noqa: E402
from bptt.study.data import VOCAB, load_timemachine  # noqa: E402
from timing import interleaved_times, median_time  # noqa: E402

V = len(VOCAB)
CONFIGS = {  # name: (H, B, T)
    "d2l-v1": (32, 1024, 32),
    "d2l-0.17": (256, 32, 35),
    "large": (512, 64, 100),
}
LR, CLIP = 1.0, 1.0


def import_torch():
    try:
        import torch
    except ImportError:
        print(
            "PyTorch is not installed. Install the optional extra:\n"
            '    pip install -e ".[peer]"      (CPU wheel: pip install torch==2.13.0)',
            file=sys.stderr,
        )
        sys.exit(2)
    torch.set_num_threads(1)
    return torch


def make_batch(B, T, seed=0):
    ids = load_timemachine()
    starts = np.random.default_rng(seed).integers(0, len(ids) - T - 1, size=B)
    seq = ids[starts[None, :] + np.arange(T + 1)[:, None]]
    return seq[:-1], seq[1:], np.ones((T, B))  # token ids (T, B), as d2l's data loader


# -- bptt ---------------------------------------------------------------------


class BpttStep:
    def __init__(self, cell, H, seed=0):
        self.model = Model(cell, V, H, V)
        self.params = self.model.init(np.random.default_rng(seed), np.float32)
        self.theta = self.model.flatten(self.params)
        self.params = self.model.unflatten(self.theta)

    def grad(self, batch, estimator=None, K=1, rng=None):
        return E.sample(self.model, self.params, batch, estimator or E.Full(), K=K, rng=rng)

    def step(self, batch):
        _, G = self.grad(batch)
        g = G[0]
        norm = float(np.linalg.norm(g))
        if norm > CLIP:
            g *= CLIP / norm
        self.theta -= LR * g


# -- PyTorch ------------------------------------------------------------------


def torch_modules(torch):
    class ScaleGrad(torch.autograd.Function):
        """Identity forward; multiplies the gradient by a constant (the edge multiplier)."""

        @staticmethod
        def forward(ctx, x, scale):
            ctx.scale = scale
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return g * ctx.scale, None

    class Scratch:
        """d2l's RNNScratch/GRUScratch + RNNLMScratch, with autograd."""

        def __init__(self, cell, params):
            self.cell = cell
            self.p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
            H = params["W_h"].shape[0]
            p = self.p
            if cell == "gru":  # views of the [z, r, n] blocks, as separate d2l parameters
                self.blocks = [(p["W_x"][:, i * H:(i + 1) * H], p["W_h"][:, i * H:(i + 1) * H],
                                p["b"][i * H:(i + 1) * H]) for i in range(3)]

        def forward(self, X, multipliers=None, detach_every=0):
            p = self.p
            X = torch.nn.functional.one_hot(X, V).float()  # as d2l's RNNLMScratch.one_hot
            T, B, _ = X.shape
            H = p["W_h"].shape[0]
            h = torch.zeros(B, H)
            outs = []
            for t in range(T):
                if t and multipliers is not None:
                    h = ScaleGrad.apply(h, float(multipliers[t]))
                if t and detach_every and t % detach_every == 0:
                    h = h.detach()
                x = X[t]
                if self.cell == "tanh":
                    h = torch.tanh(x @ p["W_x"] + h @ p["W_h"] + p["b"])
                else:
                    (Wxz, Whz, bz), (Wxr, Whr, br), (Wxn, Whn, bn) = self.blocks
                    z = torch.sigmoid(x @ Wxz + h @ Whz + bz)
                    r = torch.sigmoid(x @ Wxr + h @ Whr + br)
                    n = torch.tanh(x @ Wxn + (r * h) @ Whn + bn)
                    h = z * h + (1 - z) * n
                outs.append(h @ p["W_o"] + p["b_o"])
            return torch.stack(outs)

        def loss(self, X, Y, **kw):
            logits = self.forward(X, **kw)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1))

        def grads(self, X, Y, **kw):
            for v in self.p.values():
                v.grad = None
            self.loss(X, Y, **kw).backward()
            return np.concatenate([self.p[k].grad.numpy().ravel() for k in ("W_x", "W_h", "b", "W_o", "b_o")])

        def step(self, X, Y):
            for v in self.p.values():
                v.grad = None
            self.loss(X, Y).backward()
            with torch.no_grad():
                norm = torch.sqrt(sum((v.grad ** 2).sum() for v in self.p.values()))
                scale = min(1.0, CLIP / float(norm))
                for v in self.p.values():
                    v -= LR * scale * v.grad

    class NN:
        def __init__(self, cell, H):
            cls = torch.nn.RNN if cell == "tanh" else torch.nn.GRU
            self.rnn = cls(V, H)
            self.out = torch.nn.Linear(H, V)
            self.params = list(self.rnn.parameters()) + list(self.out.parameters())
            self.opt = torch.optim.SGD(self.params, lr=LR)

        def step(self, X, Y):
            self.opt.zero_grad()
            h, _ = self.rnn(torch.nn.functional.one_hot(X, V).float())
            logits = self.out(h)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), Y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, CLIP)
            self.opt.step()

    return Scratch, NN


def gemm_peak(n=1024, reps=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    t = median_time(lambda: a @ a, reps)
    return 2 * n**3 / t / 1e9


def recurrent_gflops(cell, H, B, T, reps):
    """GFLOP/s of bptt's forward and backward recurrent loops (the sequential part)."""
    from bptt.engine.backprop import backward

    step = BpttStep(cell, H)
    X, Y, mask = make_batch(B, T)
    model, params = step.model, step.params
    stacked = {k: v[None] for k, v in params.items()}  # the engine's replica axis, R = 1
    xproj = model.rnn.input_projection(stacked, X[None])
    s0 = model.rnn.initial_state(1, B, H, np.float32)
    G = model.rnn.gates
    flops = 2 * T * B * H * G * H
    t_fwd = median_time(lambda: model.rnn.forward(stacked, xproj, s0), reps)
    fwd = model.forward(params, X)
    _, seed, _ = model.loss_and_seed(params, fwd, Y, mask)
    ones = np.ones((1, T))
    t_bwd = median_time(lambda: backward(model, params, fwd, seed, ones), reps)
    # backward: the recurrent product plus the weight-gradient GEMM (outside the loop)
    return flops / t_fwd / 1e9, 2 * flops / t_bwd / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and workloads (default: off)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default: 3 quick, 7 full)")
    ap.add_argument("--samples", type=int, default=64, help="K for the randomized workload (default: %(default)s)")
    ap.add_argument("--configs", default=None,
                    help=f"comma list of configs among {', '.join(CONFIGS)} (default: all; quick: d2l-v1,d2l-0.17)")
    ap.add_argument("--out", default="results/bench/peer.csv", help="CSV output (default: %(default)s)")
    args = ap.parse_args(argv)
    tune_malloc()  # measure the engine as the command line runs it
    torch = import_torch()
    Scratch, NN = torch_modules(torch)
    reps = args.reps or (5 if args.quick else 11)
    rows = []

    def add(workload, config, cell, impl, seconds, tokens, **extra):
        rows.append({"workload": workload, "config": config, "cell": cell, "implementation": impl,
                     "seconds": seconds, "tokens_per_s": tokens / seconds, **extra})

    peak = gemm_peak()
    print(f"single-thread float32 GEMM peak (1024^3): {peak:.1f} GFLOP/s")
    names = args.configs.split(",") if args.configs else (["d2l-v1", "d2l-0.17"] if args.quick else list(CONFIGS))
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; valid: {', '.join(CONFIGS)}")
    configs = {k: CONFIGS[k] for k in names}
    print(f"\n{'training step':38s} {'bptt tok/s':>12s} {'scratch':>12s} {'nn':>12s} {'vs scratch':>11s} {'vs nn':>7s}")
    for cell in ("tanh", "gru"):
        for name, (H, B, T) in configs.items():
            X, Y, _ = make_batch(B, T)
            batch = (X, Y, np.ones((T, B)))
            ours = BpttStep(cell, H)
            scratch = Scratch(cell, BpttStep(cell, H).params)
            Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
            nn = NN(cell, H)
            t_ours, t_scr, t_nn = interleaved_times(
                [lambda: ours.step(batch), lambda: scratch.step(Xt, Yt), lambda: nn.step(Xt, Yt)], reps)
            tok = B * T
            add("train-step", name, cell, "bptt", t_ours, tok)
            add("train-step", name, cell, "torch-scratch", t_scr, tok)
            add("train-step", name, cell, "torch-nn", t_nn, tok)
            rows[-3]["speedup_vs_scratch"] = t_scr / t_ours
            rows[-3]["speedup_vs_nn"] = t_nn / t_ours
            print(f"{cell + ' ' + name + f' (H={H} B={B} T={T})':38s} {tok / t_ours:12.0f} {tok / t_scr:12.0f} "
                  f"{tok / t_nn:12.0f} {t_scr / t_ours:10.2f}x {t_nn / t_ours:6.2f}x")

    K = args.samples
    print(f"\n{'K=' + str(K) + ' randomized samples':38s} {'bptt (s)':>12s} {'torch loop':>12s} {'speedup':>11s}")
    k_configs = {"d2l-0.17": CONFIGS["d2l-0.17"]} if args.quick else configs
    for cell in ("tanh", "gru"):
        for name, (H, B, T) in k_configs.items():
            X, Y, _ = make_batch(B, T)
            batch = (X, Y, np.ones((T, B)))
            ours = BpttStep(cell, H)
            est = E.parse_estimator("randomized:constant:8")
            t_ours = median_time(lambda: ours.grad(batch, est, K=K, rng=np.random.default_rng(0)), reps)
            scratch = Scratch(cell, ours.params)
            Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
            sch = est.schedule
            m = sch.multipliers(sch.sample_cuts(T, np.random.default_rng(0), size=K))
            torch_reps = 1 if args.quick else max(1, reps // 3)
            t_torch = median_time(lambda: [scratch.grads(Xt, Yt, multipliers=m[k]) for k in range(K)],
                                  torch_reps, warmup=0)
            add(f"randomized-K{K}", name, cell, "bptt", t_ours, B * T * K, speedup_vs_scratch=t_torch / t_ours)
            add(f"randomized-K{K}", name, cell, "torch-scratch", t_torch, B * T * K)
            print(f"{cell + ' ' + name:38s} {t_ours:12.3f} {t_torch:12.3f} {t_torch / t_ours:10.2f}x")

    taus = [2, 4, 8, 16, 32]
    print(f"\n{'regular τ sweep ' + str(taus):38s} {'bptt (s)':>12s} {'torch':>12s} {'speedup':>11s}")
    for cell in ("tanh", "gru"):
        name = "d2l-0.17"
        H, B, T = CONFIGS[name]
        X, Y, _ = make_batch(B, T)
        batch = (X, Y, np.ones((T, B)))
        ours = BpttStep(cell, H)
        ests = [E.Regular(t) for t in taus]
        t_ours = median_time(lambda: E.sample_many(ours.model, ours.params, batch, ests), reps)
        scratch = Scratch(cell, ours.params)
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
        t_torch = median_time(lambda: [scratch.grads(Xt, Yt, detach_every=t) for t in taus], reps)
        add("tau-sweep", name, cell, "bptt", t_ours, B * T * len(taus), speedup_vs_scratch=t_torch / t_ours)
        add("tau-sweep", name, cell, "torch-scratch", t_torch, B * T * len(taus))
        print(f"{cell + ' ' + name:38s} {t_ours:12.3f} {t_torch:12.3f} {t_torch / t_ours:10.2f}x")

    print(f"\n{'recurrent loop GFLOP/s':38s} {'forward':>12s} {'backward':>12s} {'peak':>11s}")
    for cell in ("tanh", "gru"):
        for name, (H, B, T) in configs.items():
            f, b = recurrent_gflops(cell, H, B, T, reps)
            add("recurrent-loop", name, cell, "bptt", np.nan, 1.0, gflops_forward=f, gflops_backward=b,
                gemm_peak_gflops=peak)
            rows[-1]["tokens_per_s"] = np.nan
            print(f"{cell + ' ' + name:38s} {f:12.1f} {b:12.1f} {peak:11.1f}")

    out = Path(args.out)
    fields = ["workload", "config", "cell", "implementation", "seconds", "tokens_per_s", "speedup_vs_scratch",
              "speedup_vs_nn", "gflops_forward", "gflops_backward", "gemm_peak_gflops"]
    write_rows_csv(out, rows, fields)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
