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
"""

from __future__ import annotations

import numpy as np


def backward(model, params, fwd, seed, multipliers, inject=None, reduce=False):
    """Run the batched recursion; return ``{name: (K_out, *shape)}`` cell gradients.

    fwd          Forward from ``model.forward`` (shared by all samples)
    seed         (T, B, S) per-step loss gradient w.r.t. the state
    multipliers  (K, T) edge multipliers shared by the B sequences, or (K, B, T) one
                 row per sequence; step 0 is ignored (h_0 is a constant)
    inject       (K, T) weights of the seed per sample, or None for all ones
    reduce       sum the K samples before the weight gradients (K_out = 1)
    """
    cell = model.rnn
    states, X = fwd.states, fwd.X
    T, B, S = seed.shape
    m = np.asarray(multipliers, dtype=states.dtype)
    K = m.shape[0]
    if m.shape not in ((K, T), (K, B, T)):
        raise ValueError(f"multipliers must have shape (K, {T}) or (K, {B}, {T}), got {m.shape}")
    # (T, B or 1, K): the factors of the (B, K) carry rows at step t
    m_step = np.ascontiguousarray(m.transpose(2, 1, 0)) if m.ndim == 3 else m.T[:, None, :]
    if inject is not None:
        inject = np.asarray(inject, dtype=states.dtype)
        if inject.shape != (K, T):
            raise ValueError(f"inject must have shape ({K}, {T}), got {inject.shape}")
    cache = cell.prepare_backward(params, states, dict(fwd.cache))
    widths = cell.grad_widths(model.hidden_size)
    Kout = 1 if reduce else K
    stores = tuple(np.empty((T, B * Kout, w), dtype=states.dtype) for w in widths)
    temps = tuple(np.empty((B * K, w), dtype=states.dtype) for w in widths) if reduce else None

    carry = np.zeros((B * K, S), dtype=states.dtype)
    spare = np.empty_like(carry)  # ping-pong buffers: no allocation inside the loop
    for t in range(T - 1, -1, -1):
        c3 = carry.reshape(B, K, S)
        if inject is None:
            c3 += seed[t][:, None, :]
        else:
            c3 += seed[t][:, None, :] * inject[:, t][None, :, None]
        outs = temps if reduce else tuple(s[t] for s in stores)
        carry, spare = cell.backward_step(params, cache, t, carry, outs, K, spare), carry
        if reduce:
            for s, tmp in zip(stores, temps):
                tmp.reshape(B, K, -1).sum(axis=1, out=s[t])
        if t:
            carry.reshape(B, K, S)[...] *= m_step[t][:, :, None]
    return cell.param_grads(params, X, states, cache, stores, Kout)
