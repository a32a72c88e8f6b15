"""Per-token losses with a weight per token, as (value, gradient w.r.t. the outputs).

Outputs are *class-major*: an array (V, N) whose column n is the output vector of token
n (N = T*B).  Reductions over the V classes then run across contiguous rows, which is
several times faster in numpy than reducing a short last axis.

The loss is the weighted mean ``L = Σ_n w_n l(o_n, y_n) / Σ w``: with no mask,
``(1/(T B)) Σ l`` — docs/design.md's ``(1/T) Σ_t l_t`` averaged over the batch.
"""

from __future__ import annotations

import numpy as np


def _weights(mask, dtype):
    total = float(mask.sum())
    if total <= 0:
        raise ValueError("loss mask selects no token")
    return (mask.ravel() / total).astype(dtype)


def softmax_xent(outputs, targets, mask):
    """Softmax cross-entropy. outputs (V, N), integer targets (N,), mask (N,).

    Returns ``(loss, doutputs)`` with doutputs (V, N).
    """
    w = _weights(mask, outputs.dtype)
    cols = np.arange(outputs.shape[1])
    p = outputs - outputs.max(axis=0)
    np.exp(p, out=p)
    p /= p.sum(axis=0)
    p_true = p[targets, cols]
    loss = -float(np.dot(w, np.log(np.maximum(p_true, np.finfo(p.dtype).tiny))))
    p[targets, cols] = p_true - 1.0
    p *= w
    return loss, p


def squared_error(outputs, targets, mask):
    """``½ (o - y)²`` summed over output units. outputs, targets (V, N); mask (N,)."""
    w = _weights(mask, outputs.dtype)
    diff = outputs - targets
    loss = 0.5 * float(np.dot(np.einsum("vn,vn->n", diff, diff), w))
    diff *= w
    return loss, diff


def accuracy(outputs, targets, mask):
    """Weighted fraction of tokens whose argmax output equals the target. outputs (V, N)."""
    hit = (outputs.argmax(axis=0) == targets.ravel()).astype(np.float64)
    m = mask.ravel()
    return float(np.dot(hit, m) / m.sum())


LOSSES = {"xent": softmax_xent, "mse": squared_error}


def class_major_targets(Y, loss):
    """Targets in the layout of the losses: (N,) ints for xent, (V, N) for mse."""
    if loss == "xent":
        return Y.reshape(-1)
    return Y.reshape(-1, Y.shape[-1]).T
