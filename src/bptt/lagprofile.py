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

from .backprop import backward
from .model import Model


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
