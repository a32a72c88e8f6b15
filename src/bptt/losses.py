"""Per-token losses with a mask, as (value, gradient w.r.t. the outputs).

The loss is the masked mean ``L = Σ_{t,b} w_tb l(o_tb, y_tb) / Σ w``: with no mask,
``(1/(T B)) Σ l`` — DESIGN's ``(1/T) Σ_t l_t`` averaged over the batch.
"""

from __future__ import annotations

import numpy as np


def _normalizer(mask):
    total = float(mask.sum())
    if total <= 0:
        raise ValueError("loss mask selects no token")
    return total


def softmax_xent(logits, targets, mask):
    """Softmax cross-entropy. logits (T, B, V), integer targets (T, B), mask (T, B).

    Returns ``(loss, dlogits)`` with dlogits (T, B, V).
    """
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    p_true = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    w = mask / _normalizer(mask)
    loss = -float(np.sum(w * np.log(np.maximum(p_true, np.finfo(z.dtype).tiny))))
    dlogits = z
    np.put_along_axis(dlogits, targets[..., None], p_true[..., None] - 1.0, axis=-1)
    dlogits *= w[..., None].astype(z.dtype)
    return loss, dlogits


def squared_error(outputs, targets, mask):
    """``½ (o - y)²`` summed over output units. outputs, targets (T, B, V); mask (T, B)."""
    diff = outputs - targets
    w = (mask / _normalizer(mask)).astype(outputs.dtype)
    loss = 0.5 * float(np.sum(w[..., None] * diff * diff))
    return loss, diff * w[..., None]


def accuracy(logits, targets, mask):
    """Masked fraction of argmax predictions equal to the target."""
    hit = (logits.argmax(axis=-1) == targets).astype(np.float64)
    return float(np.sum(hit * mask) / _normalizer(mask))


LOSSES = {"xent": softmax_xent, "mse": squared_error}
