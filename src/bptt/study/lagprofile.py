"""How far back gradients reach: ‖∂l_T/∂h_{T-k}‖ against the lag k (docs/design.md §5).

For the chapter's linear RNN and for tanh, ``W_h`` is a Gaussian matrix rescaled to a
given spectral radius ρ; the loss is the last step's loss on random one-hot inputs;
its gradient is carried back by the engine's one backward recursion (a single path,
K = 1, every edge kept), which records δ_t at every step.
ρ < 1 shows vanishing and ρ > 1 (linear) exploding gradients: the powers of W_hh of
the chapter's closed form.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.backprop import backward
from ..engine.model import Model


def spectral_matrix(H, rho, rng):
    W = rng.normal(size=(H, H))
    return W * (rho / np.max(np.abs(np.linalg.eigvals(W))))


def lag_profile(cell, rho, hidden=32, seq_len=64, batch_size=16, vocab=8, seed=0):
    """DataFrame (k, grad_norm, relative_norm) for k = 0..T-1, mean over the batch."""
    rng = np.random.default_rng(seed)
    model = Model(cell, vocab, hidden, vocab)
    params = model.init(rng)
    params["W_h"] = spectral_matrix(hidden, rho, rng)
    X = np.eye(vocab)[rng.integers(0, vocab, (seq_len, batch_size))]
    Y = rng.integers(0, vocab, (seq_len, batch_size))
    mask = np.zeros((seq_len, batch_size))
    mask[-1] = 1.0
    fwd = model.forward(params, X)
    _, seed_grad, _ = model.loss_and_seed(params, fwd, Y, mask)
    deltas = np.empty_like(seed_grad)  # (T, B, S): ∂l_T/∂state_t
    backward(model, params, fwd, seed_grad, np.ones((1, seq_len)), deltas=deltas)
    norms = np.linalg.norm(deltas[::-1, :, :hidden], axis=2).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = norms / norms[0]
    return pd.DataFrame({"cell": cell, "rho": rho, "seed": seed, "k": np.arange(seq_len),
                         "grad_norm": norms, "relative_norm": rel})


def lag_profiles(cells, radii, seeds, **kw):
    return pd.concat([lag_profile(c, r, seed=s, **kw) for c in cells for r in radii for s in seeds],
                     ignore_index=True)


def trained_lag_profile(task, model, params, seq_len, batch_size, n_batches=4, seed=0):
    """How far back a (trained) model's gradients reach on the task's own data.

    ‖∂l_t/∂h_{t-k}‖ against k for the loss l_t of the last step t = T - 1, carried back
    by the one backward recursion (every edge kept; δ of every step recorded), averaged
    over the sequences of ``n_batches`` batches drawn from the seed's data stream.
    DataFrame (k, grad_norm, relative_norm) for k = 0..T-1; ``relative_norm`` is the
    norm relative to k = 0 (NaN where the last step's loss has no gradient).
    """
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    B = task.batch_size or batch_size
    H = model.hidden_size
    total = np.zeros(seq_len)
    for _ in range(n_batches):
        X, Y, mask = task.batch(rng, B, seq_len)
        last = np.zeros_like(mask, dtype=np.float64)
        last[-1] = mask[-1]
        if not last.any():
            raise ValueError(f"the {task.name} task has no loss at the last step of T={seq_len}")
        fwd = model.forward(params, X)
        _, seed_grad, _ = model.loss_and_seed(params, fwd, Y, last)
        deltas = np.empty_like(seed_grad)  # (T, B, S): ∂l_{T-1}/∂state_t
        backward(model, params, fwd, seed_grad, np.ones((1, seq_len)), deltas=deltas)
        total += np.linalg.norm(deltas[::-1, :, :H], axis=2).mean(axis=1)
    norms = total / n_batches
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = norms / norms[0]
    return pd.DataFrame({"k": np.arange(seq_len), "grad_norm": norms, "relative_norm": rel})


def reach_beyond(profile, tau):
    """Share of the lag profile's gradient norm at lags k >= τ: what regular(τ) drops."""
    norms = profile["grad_norm"].to_numpy()
    total = norms.sum()
    return float(norms[tau:].sum() / total) if total > 0 else float("nan")
