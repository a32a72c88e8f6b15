"""Recurrent cells: parameters, the forward loop and the hand-derived step VJP.

Every cell maps ``state_{t-1}`` (B, S) and an input projection ``xproj_t``
(B, G*H) to ``state_t``.  ``S = H`` except for the LSTM (``S = 2H``: ``[h, c]``);
the readout always sees ``state[..., :H]``.

Replicas.  Every array carries a leading replica axis R: R independent models of the
same cell and shapes (their own parameters, inputs and gradients) computed in lockstep,
so that each numpy call of the time loop serves all R of them.  Parameters are stacked
``{name: (R, *shape)}``; a single run is R = 1.  Every product is a stacked
``np.matmul`` that computes each replica with the very BLAS call it would get alone,
so replica r's numbers do not depend on R or on the other replicas.

The split of work follows docs/design.md §1: the input projection ``X @ W_x + b`` and the
weight gradients are single large matrix products done *outside* the time loop;
only the recurrent products (``h @ W_h`` forward, ``dpre @ W_h.T`` backward) and
elementwise work run inside it.  The elementwise derivative factors of a step are
computed inside the loop from that step's (R, B, H) slices of the forward record;
computing them for all T at once streams several (R, T, B, H) arrays through memory
and was measured slower (``bench/``).

Backward layout: the gradient flowing into a step is an array ``delta`` of shape
(R, B*K, S), row ``b*K + k`` holding batch element b of estimator sample k (see
``rows``), so that the K samples of an estimator share one GEMM per step.
``backward_step`` writes the gradients of the step's pre-activations into ``outs``
(one (R, B*K, width) array per entry of ``grad_widths``) and returns the gradient with
respect to ``state_{t-1}``, written into ``out`` (an (R, B*K, S) buffer that does not
alias ``delta``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _sigmoid_inplace(x):
    """σ(x) = (1 + tanh(x/2)) / 2, computed in place."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5


def _one_minus_square(x):
    """1 - x², with one allocation."""
    out = np.multiply(x, x)
    np.subtract(1.0, out, out=out)
    return out


def _sigmoid_slope(s):
    """s (1 - s), the derivative of σ given s = σ(x), with one allocation."""
    out = np.subtract(1.0, s)
    out *= s
    return out


def rows(a, K):
    """The one place of the backward row layout: view (R, B*K, W) as (R, B, K, W).

    Row ``b*K + k`` of a replica is batch element b of estimator sample k.  A view
    (writes through it land in ``a``): every (R, B*K, W) array of the backward pass has
    contiguous rows of W within each replica, which splitting B*K never copies.
    """
    if K == 1:  # the same view, cheaper to make (it is made several times per step)
        return a[:, :, None, :]
    return a.reshape(a.shape[0], -1, K, a.shape[-1])


def per_batch(coef):
    """View an (R, B, W) factor so that it broadcasts against ``rows(·, K)`` (R, B, K, W)."""
    return coef[:, :, None, :]


def _uniform(rng, shape, scale, dtype):
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def _hidden_size(params):
    return params["W_h"].shape[-2]


# -- forward records: what a cell's backward needs from its forward -----------------


@dataclass
class Record:
    """Forward record of the Linear and Tanh cells (and of Influence)."""

    states: np.ndarray  # (R, T+1, B, S), states[:, 0] the initial state

    def map(self, fn):
        """The same record with ``fn`` applied to every array (select or add replicas)."""
        return type(self)(**{k: fn(v) for k, v in vars(self).items()})


@dataclass
class GRURecord(Record):
    zr: np.ndarray  # (R, T, B, 2H) update and reset gates
    n: np.ndarray  # (R, T, B, H) candidate
    rh: np.ndarray  # (R, T, B, H) r ⊙ h_{t-1}, the input of W_hn


@dataclass
class LSTMRecord(Record):
    gates: np.ndarray  # (R, T, B, 4H) i, f, g, o after their nonlinearities
    tc: np.ndarray  # (R, T, B, H) tanh(c_t)


@dataclass
class Transposed:
    """Backward constants: contiguous W_hᵀ blocks (BLAS is up to a third faster on them
    than on transposed views) and, for the GRU, a scratch buffer for the r ⊙ h path."""

    W_hT: np.ndarray  # (R, G*H, H) or, for the GRU, the [z, r] blocks (R, 2H, H)
    W_nT: np.ndarray | None = None  # GRU: (R, H, H)
    scratch: np.ndarray | None = None  # GRU: (R, B*K, H)


class Cell:
    """Base class. Subclasses define the gate count and the step algebra."""

    name = "base"
    gates = 1
    state_factor = 1

    def state_size(self, hidden):
        return self.state_factor * hidden

    def init(self, input_size, hidden, rng, dtype=np.float64):
        """Uniform(-1/sqrt(H), 1/sqrt(H)) init, as PyTorch's RNN modules do.

        Returns one run's dict ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H,).
        """
        s = 1.0 / np.sqrt(hidden)
        gh = self.gates * hidden
        return {
            "W_x": _uniform(rng, (input_size, gh), s, dtype),
            "W_h": _uniform(rng, (hidden, gh), s, dtype),
            "b": _uniform(rng, (gh,), s, dtype),
        }

    def param_shapes(self, input_size, hidden):
        gh = self.gates * hidden
        return {"W_x": (input_size, gh), "W_h": (hidden, gh), "b": (gh,)}

    def initial_state(self, R, batch, hidden, dtype):
        return np.zeros((R, batch, self.state_size(hidden)), dtype=dtype)

    def input_projection(self, params, X):
        """(R, T, B, D) floats or (R, T, B) token ids -> (R, T, B, G*H), outside the loop.

        Dense inputs take one GEMM per replica; token ids (one-hot inputs) take one row
        gather of ``W_x + b``, several times cheaper than multiplying by a one-hot matrix.
        """
        R = params["W_x"].shape[0]
        if X.ndim == 3:
            table = params["W_x"] + params["b"][:, None, :]
            return table[np.arange(R)[:, None], X.reshape(R, -1)].reshape(X.shape + (-1,))
        R, T, B, D = X.shape
        xproj = np.matmul(X.reshape(R, T * B, D), params["W_x"])
        xproj += params["b"][:, None, :]
        return xproj.reshape(R, T, B, -1)

    def grad_widths(self, hidden):
        return (self.gates * hidden,)

    def prepare_backward(self, params, record, rows_per_replica):
        """Constants and scratch of the backward loop (``rows_per_replica`` = B*K)."""
        return Transposed(np.ascontiguousarray(params["W_h"].transpose(0, 2, 1)))

    def recurrent_grad_inputs(self, record, hidden):
        """Arrays (R, T, B, ·) that multiply each ``outs`` block in ``dW_h``."""
        return (record.states[:, :-1, :, :hidden],)

    def param_grads(self, params, X, record, stores, K):
        """Weight gradients from the stored pre-activation gradients.

        ``stores[i]`` has shape (R, T, B*K, width_i).  Returns ``{name: (R, K, *shape)}``.
        One GEMM per parameter block and replica, over all T*B rows at once.
        """
        R, D = params["W_x"].shape[:2]
        if X.ndim == 3:  # token ids: the one-hot matrix, for one GEMM per block
            _, T, B = X.shape
            Xf = np.eye(D, dtype=record.states.dtype)[X.reshape(R, -1)]
        else:
            _, T, B, _ = X.shape
            Xf = X.reshape(R, T * B, D)
        ones = np.ones(T * B, dtype=record.states.dtype)  # a GEMV sums rows faster than .sum()
        XfT = Xf.transpose(0, 2, 1)
        dWx, dWh, db = [], [], []
        for store, rec in zip(stores, self.recurrent_grad_inputs(record, _hidden_size(params))):
            w = store.shape[-1]
            P = store.reshape(R, T * B, K * w)
            dWx.append(np.matmul(XfT, P).reshape(R, D, K, w))
            recT = rec.reshape(R, T * B, -1).transpose(0, 2, 1)
            dWh.append(np.matmul(recT, P).reshape(R, -1, K, w))
            db.append(np.matmul(ones, P).reshape(R, K, w))
        cat = lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts, -1)
        return {
            "W_x": cat(dWx).transpose(0, 2, 1, 3),
            "W_h": cat(dWh).transpose(0, 2, 1, 3),
            "b": cat(db),
        }


class Linear(Cell):
    """``h_t = x_t W_x + h_{t-1} W_h + b`` (identity activation, d2l §9.7)."""

    name = "linear"

    def forward(self, params, xproj, state0):
        """xproj (R, T, B, H), state0 (R, B, H) -> Record (states (R, T+1, B, H))."""
        R, T, B, H = xproj.shape
        states = np.empty((R, T + 1, B, H), dtype=xproj.dtype)
        states[:, 0] = state0
        W_h = params["W_h"]
        for t in range(T):
            pre = states[:, t + 1]
            np.matmul(states[:, t], W_h, out=pre)
            pre += xproj[:, t]
            self._activate(pre)
        return Record(states)

    def _activate(self, pre):
        """The activation, in place (identity here)."""

    def backward_step(self, ctx, record, t, delta, outs, K, out):
        outs[0][...] = delta
        return np.matmul(delta, ctx.W_hT, out=out)


class Tanh(Linear):
    """``h_t = tanh(x_t W_x + h_{t-1} W_h + b)`` (d2l's RNNScratch)."""

    name = "tanh"

    def _activate(self, pre):
        np.tanh(pre, out=pre)

    def backward_step(self, ctx, record, t, delta, outs, K, out):
        dpre = outs[0]
        slope = _one_minus_square(record.states[:, t + 1])
        np.multiply(rows(delta, K), per_batch(slope), out=rows(dpre, K))
        return np.matmul(dpre, ctx.W_hT, out=out)


class GRU(Cell):
    """d2l's GRU: gates z (update), r (reset), candidate n.

    ``z = σ(x W_xz + h W_hz + b_z)``, ``r = σ(x W_xr + h W_hr + b_r)``,
    ``n = tanh(x W_xn + (r ⊙ h) W_hn + b_n)``, ``h' = z ⊙ h + (1 - z) ⊙ n``.
    Column blocks of ``W_x``, ``W_h`` and ``b`` are ordered [z, r, n].
    """

    name = "gru"
    gates = 3

    def forward(self, params, xproj, state0):
        """xproj (R, T, B, 3H), state0 (R, B, H) -> GRURecord."""
        R, T, B, G3 = xproj.shape
        H = G3 // 3
        dt = xproj.dtype
        states = np.empty((R, T + 1, B, H), dtype=dt)
        states[:, 0] = state0
        zr = np.empty((R, T, B, 2 * H), dt)
        n = np.empty((R, T, B, H), dt)
        rh = np.empty((R, T, B, H), dt)
        W_zr = params["W_h"][..., : 2 * H]
        W_n = params["W_h"][..., 2 * H :]
        for t in range(T):
            h, g, c, rh_t = states[:, t], zr[:, t], n[:, t], rh[:, t]
            np.matmul(h, W_zr, out=g)
            g += xproj[:, t, :, : 2 * H]
            _sigmoid_inplace(g)
            np.multiply(g[..., H:], h, out=rh_t)
            np.matmul(rh_t, W_n, out=c)
            c += xproj[:, t, :, 2 * H :]
            np.tanh(c, out=c)
            # h' = n + z (h - n)
            hn = states[:, t + 1]
            np.subtract(h, c, out=hn)
            hn *= g[..., :H]
            hn += c
        return GRURecord(states, zr, n, rh)

    def prepare_backward(self, params, record, rows_per_replica):
        H = _hidden_size(params)
        W_hT = params["W_h"].transpose(0, 2, 1)
        scratch = np.empty((W_hT.shape[0], rows_per_replica, H), W_hT.dtype)
        return Transposed(np.ascontiguousarray(W_hT[:, : 2 * H]), np.ascontiguousarray(W_hT[:, 2 * H :]), scratch)

    def _slopes(self, record, t, H):
        """(1 - z)(1 - n²), (h - n) z (1 - z), h r (1 - r) for step t, each (R, B, H)."""
        g = record.zr[:, t]
        z, r, n, h_prev = g[..., :H], g[..., H:], record.n[:, t], record.states[:, t]
        one_minus_z = np.subtract(1.0, z)
        c_n = _one_minus_square(n)
        c_n *= one_minus_z
        c_z = np.subtract(h_prev, n)
        c_z *= z
        c_z *= one_minus_z
        c_r = _sigmoid_slope(r)
        c_r *= h_prev
        return c_n, c_z, c_r

    def grad_widths(self, hidden):
        return (2 * hidden, hidden)

    def recurrent_grad_inputs(self, record, hidden):
        return (record.states[:, :-1], record.rh)

    def backward_step(self, ctx, record, t, delta, outs, K, out):
        dzr, dn = outs
        H = dn.shape[-1]
        drh = ctx.scratch
        d3, drh3 = rows(delta, K), rows(drh, K)
        c_n, c_z, c_r = self._slopes(record, t, H)
        np.multiply(d3, per_batch(c_n), out=rows(dn, K))
        np.matmul(dn, ctx.W_nT, out=drh)
        dzr3 = rows(dzr, K)
        np.multiply(d3, per_batch(c_z), out=dzr3[..., :H])
        np.multiply(drh3, per_batch(c_r), out=dzr3[..., H:])
        dprev = np.matmul(dzr, ctx.W_hT, out=out)
        p3 = rows(dprev, K)
        # delta and drh are dead after this step: scale them in place
        g = record.zr[:, t]
        d3 *= per_batch(g[..., :H])
        p3 += d3
        drh3 *= per_batch(g[..., H:])
        p3 += drh3
        return dprev


class LSTM(Cell):
    """LSTM with gates i, f, g (candidate), o; state ``[h, c]`` of size 2H.

    ``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')``.  Column blocks ordered [i, f, g, o].
    """

    name = "lstm"
    gates = 4
    state_factor = 2

    def forward(self, params, xproj, state0):
        """xproj (R, T, B, 4H), state0 (R, B, 2H) -> LSTMRecord."""
        R, T, B, G4 = xproj.shape
        H = G4 // 4
        dt = xproj.dtype
        states = np.empty((R, T + 1, B, 2 * H), dtype=dt)
        states[:, 0] = state0
        gates = np.empty((R, T, B, 4 * H), dt)
        tc = np.empty((R, T, B, H), dt)
        W_h = params["W_h"]
        for t in range(T):
            a = gates[:, t]
            np.matmul(states[:, t, :, :H], W_h, out=a)
            a += xproj[:, t]
            _sigmoid_inplace(a[..., : 2 * H])
            np.tanh(a[..., 2 * H : 3 * H], out=a[..., 2 * H : 3 * H])
            _sigmoid_inplace(a[..., 3 * H :])
            c = states[:, t + 1, :, H:]
            np.multiply(a[..., H : 2 * H], states[:, t, :, H:], out=c)
            c += a[..., :H] * a[..., 2 * H : 3 * H]
            np.tanh(c, out=tc[:, t])
            np.multiply(a[..., 3 * H :], tc[:, t], out=states[:, t + 1, :, :H])
        return LSTMRecord(states, gates, tc)

    def _slopes(self, record, t, H):
        """Derivative factors of step t, each (R, B, H): dh->dc', then i, f, g, o."""
        g = record.gates[:, t]
        i, f, gg, o = g[..., :H], g[..., H : 2 * H], g[..., 2 * H : 3 * H], g[..., 3 * H :]
        tc = record.tc[:, t]
        c_prev = record.states[:, t, :, H:]
        c_c = _one_minus_square(tc)  # o (1 - tanh² c')
        c_c *= o
        c_i = _sigmoid_slope(i)  # g i (1 - i)
        c_i *= gg
        c_f = _sigmoid_slope(f)  # c_{t-1} f (1 - f)
        c_f *= c_prev
        c_g = _one_minus_square(gg)  # i (1 - g²)
        c_g *= i
        c_o = _sigmoid_slope(o)  # tanh(c') o (1 - o)
        c_o *= tc
        return c_c, c_i, c_f, c_g, c_o, f

    def backward_step(self, ctx, record, t, delta, outs, K, out):
        H = delta.shape[-1] // 2
        d3 = rows(delta, K)
        dh, dc = d3[..., :H], d3[..., H:]
        dpre = rows(outs[0], K)
        c_c, c_i, c_f, c_g, c_o, f = (per_batch(c) for c in self._slopes(record, t, H))
        # total gradient of c' accumulated in place in delta (dead after this step),
        # using the i-block of dpre as scratch before it is written
        np.multiply(dh, c_c, out=dpre[..., :H])
        dc += dpre[..., :H]
        dc_tot = dc
        np.multiply(dc_tot, c_i, out=dpre[..., :H])
        np.multiply(dc_tot, c_f, out=dpre[..., H : 2 * H])
        np.multiply(dc_tot, c_g, out=dpre[..., 2 * H : 3 * H])
        np.multiply(dh, c_o, out=dpre[..., 3 * H :])
        dprev = out
        np.matmul(outs[0], ctx.W_hT, out=dprev[..., :H])
        np.multiply(dc_tot, f, out=rows(dprev, K)[..., H:])
        return dprev


class Influence(Cell):
    """The influence-balancing system (Tallec & Ollivier): ``s_t = A s_{t-1} + θ u``.

    ``A = 0.5 I + 0.5 N`` (N the superdiagonal shift), ``u`` = +1 on the first ``p``
    units and -1 on the rest.  The only parameter is the scalar θ; the input is a
    constant 1 (D = 1) so ``xproj_t = θ u``.  ``hidden`` is the number of units n.

    A is shared by all replicas, so the state update of all R·B sequences is one GEMM
    with R·B rows.  Each entry of ``s A`` has two nonzero terms, halves of floats, so
    any summation order gives the same, correctly rounded, sum: replica r's numbers
    equal those of the run alone.
    """

    name = "influence"

    def __init__(self, n=23, positive=10, theta0=0.5):
        if not 0 < positive <= n:
            raise ValueError(f"influence: need 0 < p <= n, got n={n}, p={positive}")
        self.n = n
        self.positive = positive
        self.theta0 = theta0
        self.A, self.u = influence_system(n, positive)

    def system(self, dtype=np.float64):
        """(A (n, n), u (n,)) in ``dtype``."""
        return self.A.astype(dtype, copy=False), self.u.astype(dtype, copy=False)

    def init(self, input_size, hidden, rng, dtype=np.float64):
        return {"theta": np.full((1,), self.theta0, dtype=dtype)}

    def param_shapes(self, input_size, hidden):
        return {"theta": (1,)}

    def initial_state(self, R, batch, hidden, dtype):
        return np.ones((R, batch, hidden), dtype=dtype)

    def input_projection(self, params, X):
        _, u = self.system(X.dtype)
        return X[..., :1] * (params["theta"][:, None, None, :] * u)

    def forward(self, params, xproj, state0):
        R, T, B, n = xproj.shape
        A, _ = self.system(xproj.dtype)
        states = np.empty((T + 1, R * B, n), dtype=xproj.dtype)  # time-major: one GEMM per step
        states[0] = state0.reshape(R * B, n)
        x = np.ascontiguousarray(xproj.transpose(1, 0, 2, 3)).reshape(T, R * B, n)
        AT = A.T.copy()
        for t in range(T):
            np.matmul(states[t], AT, out=states[t + 1])
            states[t + 1] += x[t]
        return Record(states.reshape(T + 1, R, B, n).transpose(1, 0, 2, 3))

    def prepare_backward(self, params, record, rows_per_replica):
        return Transposed(self.system(record.states.dtype)[0])

    def backward_step(self, ctx, record, t, delta, outs, K, out):
        outs[0][...] = delta
        R, BK, n = delta.shape
        np.matmul(delta.reshape(R * BK, n), ctx.W_hT, out=out.reshape(R * BK, n))
        return out

    def param_grads(self, params, X, record, stores, K):
        """dθ_k = Σ_{t,b} x_{t,b} uᵀ dpre_{t,b,k}, as two stacked products."""
        R, T, B, _ = X.shape
        n = self.n
        _, u = self.system(X.dtype)
        x = X[..., 0].reshape(R, 1, T * B)
        P = stores[0].reshape(R, T * B, K * n)
        dtheta = np.matmul(np.matmul(x, P).reshape(R, K, n), u)
        return {"theta": dtheta[..., None]}


def influence_system(n, positive, dtype=np.float64):
    """The influence-balancing system's ``A = 0.5 I + 0.5 N`` (n, n) and ``u`` (n,)."""
    A = 0.5 * np.eye(n, dtype=dtype) + 0.5 * np.eye(n, k=1, dtype=dtype)
    u = -np.ones(n, dtype=dtype)
    u[:positive] = 1.0
    return A, u


CELLS = {c.name: c for c in (Linear, Tanh, GRU, LSTM, Influence)}


def get_cell(name, **kwargs):
    """Instantiate a cell by name; unknown names list the valid ones."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(sorted(CELLS))}") from None
    return cls(**kwargs)
