"""The one backward recursion behind every estimator (docs/design.md §1).

For K samples at once, with edge multipliers ``m[k, t]`` on ``h_{t-1} -> h_t`` and
injection weights ``a[k, t]`` on the per-step loss seed ``s_t = ∂l_t/∂h_t``:

    δ_t[k]     = a[k, t] · s_t + carry_t[k]
    carry_{t-1}[k] = m[k, t] · (∂f_t/∂h_{t-1})ᵀ δ_t[k]
    ∂L/∂w [k]  ≈ Σ_t (∂f_t/∂w)ᵀ δ_t[k]

``full`` is m ≡ 1, a ≡ 1.  ``regular`` and ``randomized`` only change m.  ``windowed``
uses K "slots" (one per residue of t mod τ) with one slot reset per step and sums
the slots (``reduce=True``).  The last line is done after the loop, as one GEMM per
parameter block over all T·B rows.

The recursion runs R replicas (independent models, see ``cells``) in lockstep, each
with its own multipliers; a single run is R = 1.  Multipliers may also differ per
sequence of a batch: m[k, b, t].
"""

from __future__ import annotations

import numpy as np

from .cells import rows


def _per_step(weights, R, K, B, T, name, dtype):
    """(R, K, T) or (R, K, B, T) weights -> (T, R, B or 1, K, 1): step t broadcasts
    against the carry seen as (R, B, K, S)."""
    w = np.asarray(weights, dtype=dtype)
    if w.shape not in ((R, K, T), (R, K, B, T)):
        raise ValueError(f"{name} must have shape (K, {T}) or (K, {B}, {T}) per replica, K = {K} "
                         f"and R = {R} replicas; got {w.shape}")
    if w.ndim == 3:
        w = w[:, :, None, :]
    return np.ascontiguousarray(w.transpose(3, 0, 2, 1))[..., None]


def group_backward(model, params, fwd, seed, multipliers, inject=None, reduce=False, deltas=None):
    """Run the recursion for R replicas; return ``{name: (R, K_out, *shape)}`` cell gradients.

    params       {name: (R, *shape)} stacked parameters
    fwd          Forward from ``model.forward_group`` (shared by all K samples)
    seed         (R, T, B, S) per-step loss gradient w.r.t. the state
    multipliers  (R, K, T), or (R, K, B, T) per sequence; column 0 is ignored (h_0 is a constant)
    inject       weights of the seed per sample, shaped like ``multipliers``, or None for ones
    reduce       sum the K samples before the weight gradients (K_out = 1)
    deltas       None, or an (R, T, B*K, S) array that receives every δ_t (rows ``cells.rows``)
    """
    cell = model.rnn
    record = fwd.record
    R, T, B, S = seed.shape
    dt = record.states.dtype
    K = np.shape(multipliers)[1]
    m = _per_step(multipliers, R, K, B, T, "multipliers", dt)
    kept = (m == 1).reshape(T, -1).all(axis=1)  # steps whose edges all have m = 1: no scaling
    a = None if inject is None else _per_step(inject, R, K, B, T, "inject", dt)
    ctx = cell.prepare_backward(params, record, B * K)
    widths = cell.grad_widths(model.hidden_size)
    Kout = 1 if reduce else K
    stores = tuple(np.empty((R, T, B * Kout, w), dtype=dt) for w in widths)
    temps = tuple(np.empty((R, B * K, w), dtype=dt) for w in widths) if reduce else None

    # ping-pong buffers (no allocation inside the loop) and their (R, B, K, S) views
    carry = np.zeros((R, B * K, S), dtype=dt)
    spare = np.empty_like(carry)
    c4, s4 = rows(carry, K), rows(spare, K)
    for t in range(T - 1, -1, -1):
        s_t = seed[:, t, :, None, :]
        c4 += s_t if a is None else s_t * a[t]
        if deltas is not None:
            deltas[:, t] = carry
        outs = temps if reduce else tuple(s[:, t] for s in stores)
        cell.backward_step(ctx, record, t, carry, outs, K, out=spare)
        carry, spare, c4, s4 = spare, carry, s4, c4
        if reduce:
            for s, tmp in zip(stores, temps):
                rows(tmp, K).sum(axis=2, out=s[:, t])
        if t and not kept[t]:
            c4 *= m[t]
    return cell.param_grads(params, fwd.X, record, stores, Kout)


def backward(model, params, fwd, seed, multipliers, inject=None, reduce=False, deltas=None):
    """One run: ``group_backward`` with R = 1; return ``{name: (K_out, *shape)}``.

    params, fwd  one run's parameters and ``model.forward``
    seed         (T, B, S); multipliers and inject (K, T) or (K, B, T)
    deltas       None, or a (T, B*K, S) array that receives every δ_t
    """
    one = lambda a: None if a is None else np.asarray(a)[None]
    stacked = {k: v[None] for k, v in params.items()}
    g = group_backward(model, stacked, fwd.stacked(), seed[None], one(multipliers), one(inject), reduce,
                       one(deltas))
    return {k: v[0] for k, v in g.items()}
