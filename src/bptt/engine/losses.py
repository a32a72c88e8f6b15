"""Per-token losses with a weight per token, as (value, gradient w.r.t. the outputs).

Outputs are *class-major*: an array (V, N) whose column n is the output vector of token
n (N = T*B).  Reductions over the V classes then run across contiguous rows, which is
several times faster in numpy than reducing a short last axis.

The loss is the weighted mean ``L = Σ_n w_n l(o_n, y_n) / Σ w``: with no mask,
``(1/(T B)) Σ l`` — docs/design.md's ``(1/T) Σ_t l_t`` averaged over the batch.
"""

from __future__ import annotations

import numpy as np


def _weights(mask, outputs):
    """Token weights (..., N) in the dtype of ``outputs`` (..., V, N); one total per run."""
    m = np.asarray(mask).reshape(outputs.shape[:-2] + (-1,))
    total = m.sum(axis=-1, keepdims=True, dtype=np.float64)
    if (total <= 0).any():
        raise ValueError("loss mask selects no token")
    return (m / total).astype(outputs.dtype)


def _dot(a, b):
    """Σ_n a_n b_n over the last axis: a float, or float64 (R,) with a leading axis.

    A stacked (1, N) @ (N, 1) product is the BLAS dot of each run alone."""
    d = np.matmul(a[..., None, :], b[..., :, None])[..., 0, 0]
    return float(d) if d.ndim == 0 else d.astype(np.float64)


def softmax_xent(outputs, targets, mask):
    """Softmax cross-entropy. outputs (V, N), integer targets (N,), mask (N,).

    Returns ``(loss, doutputs)`` with doutputs (V, N).  With a leading replica axis
    (R, V, N), (R, N), (R, N): losses (R,) and doutputs (R, V, N).
    """
    w = _weights(mask, outputs)
    p = outputs - outputs.max(axis=-2, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=-2, keepdims=True)
    cols = np.arange(p.shape[-1])
    ix = (targets, cols) if p.ndim == 2 else (np.arange(p.shape[0])[:, None], targets, cols)
    p_true = p[ix]
    loss = -_dot(w, np.log(np.maximum(p_true, np.finfo(p.dtype).tiny)))
    p[ix] = p_true - 1.0
    p *= w[..., None, :]
    return loss, p


def squared_error(outputs, targets, mask):
    """``½ (o - y)²`` summed over output units. outputs, targets (V, N); mask (N,).

    With a leading replica axis: losses (R,) and doutputs (R, V, N).
    """
    w = _weights(mask, outputs)
    diff = outputs - targets
    loss = 0.5 * _dot(np.multiply(diff, diff).sum(axis=-2), w)
    diff *= w[..., None, :]
    return loss, diff


def accuracy(outputs, targets, mask):
    """Weighted fraction of tokens whose argmax output equals the target. outputs (V, N)."""
    hit = (outputs.argmax(axis=0) == targets.ravel()).astype(np.float64)
    m = mask.ravel()
    return float(np.dot(hit, m) / m.sum())


LOSSES = {"xent": softmax_xent, "mse": squared_error}


def class_major_targets(Y, loss):
    """Targets in the layout of the losses: (N,) ints for xent, (V, N) for mse; with a
    leading replica axis, (R, T, B) -> (R, N) and (R, T, B, V) -> (R, V, N)."""
    if loss == "xent":
        return Y.reshape(Y.shape[:-2] + (-1,))
    return np.swapaxes(Y.reshape(Y.shape[:-3] + (-1, Y.shape[-1])), -1, -2)
