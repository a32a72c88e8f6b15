"""Recurrent cells: parameters, the forward loop and the hand-derived step VJP.

Every cell maps ``state_{t-1}`` (B, S) and an input projection ``xproj_t``
(B, G*H) to ``state_t``.  ``S = H`` except for the LSTM (``S = 2H``: ``[h, c]``);
the readout always sees ``state[..., :H]``.

The split of work follows docs/design.md §1: the input projection ``X @ W_x + b`` and the
weight gradients are single large matrix products done *outside* the time loop;
only the recurrent products (``h @ W_h`` forward, ``dpre @ W_h.T`` backward) and
elementwise work run inside it.  The elementwise derivative factors of a step are
computed inside the loop from that step's (B, H) slices, which stay in cache; computing
them for all T at once streams several (T, B, H) arrays through memory and was measured
slower (``bench/``).

Backward layout: the gradient flowing into a step is a 2-D array ``delta`` of shape
(B*K, S), row ``b*K + k`` holding batch element b of estimator sample k, so that the
K samples of an estimator share one GEMM per step.  ``backward_step`` writes the
gradients of the step's pre-activations into ``outs`` (one (B*K, width) array per
entry of ``grad_widths``) and returns the gradient with respect to ``state_{t-1}``,
written into ``out`` (a (B*K, S) buffer that does not alias ``delta``).
"""

from __future__ import annotations

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


def _per_batch(coef, K):
    """View a (B, W) factor so that it broadcasts against (B*K, W) rows seen as (B, K, W)."""
    return coef[:, None, :]


def _rows(a, K):
    """View (B*K, W) as (B, K, W)."""
    return a.reshape(-1, K, a.shape[-1])


def _uniform(rng, shape, scale, dtype):
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


class Cell:
    """Base class. Subclasses define the gate count and the step algebra."""

    name = "base"
    gates = 1
    state_factor = 1

    def state_size(self, hidden):
        return self.state_factor * hidden

    def init(self, input_size, hidden, rng, dtype=np.float64):
        """Uniform(-1/sqrt(H), 1/sqrt(H)) init, as PyTorch's RNN modules do.

        Returns a dict ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b`` (G*H,).
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

    def initial_state(self, batch, hidden, dtype):
        return np.zeros((batch, self.state_size(hidden)), dtype=dtype)

    def input_projection(self, params, X):
        """(T, B, D) floats or (T, B) token ids -> (T, B, G*H), outside the time loop.

        Dense inputs take one GEMM; token ids (one-hot inputs) take one row gather of
        ``W_x + b``, several times cheaper than multiplying by a one-hot matrix.
        """
        if X.ndim == 2:
            table = params["W_x"] + params["b"]
            return np.take(table, X.reshape(-1), axis=0).reshape(X.shape + (-1,))
        T, B, D = X.shape
        xproj = X.reshape(T * B, D) @ params["W_x"]
        xproj += params["b"]
        return xproj.reshape(T, B, -1)

    def grad_widths(self, hidden):
        return (self.gates * hidden,)

    def recurrent_grad_inputs(self, states, cache):
        """Arrays (T, B, H) that multiply each ``outs`` block in ``dW_h``."""
        H = cache["H"]
        return (states[:-1, :, :H],)

    def param_grads(self, params, X, states, cache, stores, K):
        """Weight gradients from the stored pre-activation gradients.

        ``stores[i]`` has shape (T, B*K, width_i).  Returns ``{name: (K, *shape)}``.
        One GEMM per parameter block, over all T*B rows at once.
        """
        if X.ndim == 2:  # token ids: the one-hot matrix, for one GEMM per block
            T, B = X.shape
            D = params["W_x"].shape[0]
            Xf = np.eye(D, dtype=states.dtype)[X.reshape(-1)]
        else:
            T, B, D = X.shape
            Xf = X.reshape(T * B, D)
        ones = np.ones(T * B, dtype=states.dtype)  # a GEMV sums rows faster than .sum(axis=0)
        dWx, dWh, db = [], [], []
        for store, rec in zip(stores, self.recurrent_grad_inputs(states, cache)):
            w = store.shape[-1]
            P = store.reshape(T * B, K * w)
            dWx.append((Xf.T @ P).reshape(D, K, w))
            dWh.append((rec.reshape(T * B, -1).T @ P).reshape(-1, K, w))
            db.append((ones @ P).reshape(K, w))
        cat = lambda parts, axis: parts[0] if len(parts) == 1 else np.concatenate(parts, axis)
        return {
            "W_x": cat(dWx, -1).transpose(1, 0, 2),
            "W_h": cat(dWh, -1).transpose(1, 0, 2),
            "b": cat(db, -1),
        }


class Linear(Cell):
    """``h_t = x_t W_x + h_{t-1} W_h + b`` (identity activation, d2l §9.7)."""

    name = "linear"

    def forward(self, params, xproj, state0):
        T, B, H = xproj.shape
        states = np.empty((T + 1, B, H), dtype=xproj.dtype)
        states[0] = state0
        W_h = params["W_h"]
        for t in range(T):
            pre = states[t + 1]
            np.matmul(states[t], W_h, out=pre)
            pre += xproj[t]
            self._activate(pre)
        return states, {"H": H}

    def _activate(self, pre):
        """The activation, in place (identity here)."""

    def prepare_backward(self, params, states, cache):
        cache["W_hT"] = np.ascontiguousarray(params["W_h"].T)
        return cache

    def backward_step(self, params, cache, t, delta, outs, K, out):
        outs[0][...] = delta
        return np.matmul(delta, cache["W_hT"], out=out)


class Tanh(Linear):
    """``h_t = tanh(x_t W_x + h_{t-1} W_h + b)`` (d2l's RNNScratch)."""

    name = "tanh"

    def _activate(self, pre):
        np.tanh(pre, out=pre)

    def prepare_backward(self, params, states, cache):
        cache["states"] = states
        # a contiguous W_hᵀ: BLAS is up to a third faster than on the transposed view
        cache["W_hT"] = np.ascontiguousarray(params["W_h"].T)
        return cache

    def backward_step(self, params, cache, t, delta, outs, K, out):
        dpre = outs[0]
        slope = _one_minus_square(cache["states"][t + 1])
        np.multiply(_rows(delta, K), _per_batch(slope, K), out=_rows(dpre, K))
        return np.matmul(dpre, cache["W_hT"], out=out)


class GRU(Cell):
    """d2l's GRU: gates z (update), r (reset), candidate n.

    ``z = σ(x W_xz + h W_hz + b_z)``, ``r = σ(x W_xr + h W_hr + b_r)``,
    ``n = tanh(x W_xn + (r ⊙ h) W_hn + b_n)``, ``h' = z ⊙ h + (1 - z) ⊙ n``.
    Column blocks of ``W_x``, ``W_h`` and ``b`` are ordered [z, r, n].
    """

    name = "gru"
    gates = 3

    def forward(self, params, xproj, state0):
        T, B, G3 = xproj.shape
        H = G3 // 3
        dt = xproj.dtype
        states = np.empty((T + 1, B, H), dtype=dt)
        states[0] = state0
        zr = np.empty((T, B, 2 * H), dt)
        n = np.empty((T, B, H), dt)
        rh = np.empty((T, B, H), dt)
        W_zr = params["W_h"][:, : 2 * H]
        W_n = params["W_h"][:, 2 * H :]
        for t in range(T):
            h, g, c = states[t], zr[t], n[t]
            np.matmul(h, W_zr, out=g)
            g += xproj[t, :, : 2 * H]
            _sigmoid_inplace(g)
            np.multiply(g[:, H:], h, out=rh[t])
            np.matmul(rh[t], W_n, out=c)
            c += xproj[t, :, 2 * H :]
            np.tanh(c, out=c)
            # h' = n + z (h - n)
            hn = states[t + 1]
            np.subtract(h, c, out=hn)
            hn *= g[:, :H]
            hn += c
        return states, {"H": H, "z": zr[..., :H], "r": zr[..., H:], "n": n, "rh": rh}

    def prepare_backward(self, params, states, cache):
        H = cache["H"]
        cache["states"] = states
        cache["W_zrT"] = np.ascontiguousarray(params["W_h"][:, : 2 * H].T)
        cache["W_nT"] = np.ascontiguousarray(params["W_h"][:, 2 * H :].T)
        return cache

    def _slopes(self, cache, t):
        """(1 - z)(1 - n²), (h - n) z (1 - z), h r (1 - r) for step t, each (B, H)."""
        z, r, n, h_prev = cache["z"][t], cache["r"][t], cache["n"][t], cache["states"][t]
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

    def recurrent_grad_inputs(self, states, cache):
        return (states[:-1], cache["rh"])

    def backward_step(self, params, cache, t, delta, outs, K, out):
        H = cache["H"]
        dzr, dn = outs
        drh = cache.get("drh")
        if drh is None or drh.shape != dn.shape:
            drh = cache["drh"] = np.empty_like(dn)
        d3, drh3 = _rows(delta, K), _rows(drh, K)
        c_n, c_z, c_r = self._slopes(cache, t)
        np.multiply(d3, _per_batch(c_n, K), out=_rows(dn, K))
        np.matmul(dn, cache["W_nT"], out=drh)
        dzr3 = _rows(dzr, K)
        np.multiply(d3, _per_batch(c_z, K), out=dzr3[..., :H])
        np.multiply(drh3, _per_batch(c_r, K), out=dzr3[..., H:])
        dprev = np.matmul(dzr, cache["W_zrT"], out=out)
        p3 = _rows(dprev, K)
        # delta and drh are dead after this step: scale them in place
        d3 *= _per_batch(cache["z"][t], K)
        p3 += d3
        drh3 *= _per_batch(cache["r"][t], K)
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
        T, B, G4 = xproj.shape
        H = G4 // 4
        dt = xproj.dtype
        states = np.empty((T + 1, B, 2 * H), dtype=dt)
        states[0] = state0
        gates = np.empty((T, B, 4 * H), dt)
        tc = np.empty((T, B, H), dt)
        W_h = params["W_h"]
        for t in range(T):
            a = gates[t]
            np.matmul(states[t, :, :H], W_h, out=a)
            a += xproj[t]
            _sigmoid_inplace(a[:, : 2 * H])
            np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
            _sigmoid_inplace(a[:, 3 * H :])
            c = states[t + 1, :, H:]
            np.multiply(a[:, H : 2 * H], states[t, :, H:], out=c)
            c += a[:, :H] * a[:, 2 * H : 3 * H]
            np.tanh(c, out=tc[t])
            np.multiply(a[:, 3 * H :], tc[t], out=states[t + 1, :, :H])
        return states, {"H": H, "gates": gates, "tc": tc}

    def prepare_backward(self, params, states, cache):
        cache["states"] = states
        cache["W_hT"] = np.ascontiguousarray(params["W_h"].T)
        return cache

    def _slopes(self, cache, t):
        """Derivative factors of step t, each (B, H): dh->dc', then i, f, g, o."""
        H = cache["H"]
        g = cache["gates"][t]
        i, f, gg, o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        tc = cache["tc"][t]
        c_prev = cache["states"][t, :, H:]
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

    def recurrent_grad_inputs(self, states, cache):
        return (states[:-1, :, : cache["H"]],)

    def backward_step(self, params, cache, t, delta, outs, K, out):
        H = cache["H"]
        d3 = _rows(delta, K)
        dh, dc = d3[..., :H], d3[..., H:]
        dpre = _rows(outs[0], K)
        c_c, c_i, c_f, c_g, c_o, f = (_per_batch(c, K) for c in self._slopes(cache, t))
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
        np.matmul(outs[0], cache["W_hT"], out=dprev[:, :H])
        np.multiply(dc_tot, f, out=_rows(dprev, K)[..., H:])
        return dprev


class Influence(Cell):
    """The influence-balancing system (Tallec & Ollivier): ``s_t = A s_{t-1} + θ u``.

    ``A = 0.5 I + 0.5 N`` (N the superdiagonal shift), ``u`` = +1 on the first ``p``
    units and -1 on the rest.  The only parameter is the scalar θ; the input is a
    constant 1 (D = 1) so ``xproj_t = θ u``.  ``hidden`` is the number of units n.
    """

    name = "influence"

    def __init__(self, n=23, positive=10, theta0=0.5):
        if not 0 < positive <= n:
            raise ValueError(f"influence: need 0 < p <= n, got n={n}, p={positive}")
        self.n = n
        self.positive = positive
        self.theta0 = theta0

    def system(self, n, dtype=np.float64):
        A = 0.5 * np.eye(n, dtype=dtype) + 0.5 * np.eye(n, k=1, dtype=dtype)
        u = -np.ones(n, dtype=dtype)
        u[: self.positive] = 1.0
        return A, u

    def init(self, input_size, hidden, rng, dtype=np.float64):
        return {"theta": np.full((1,), self.theta0, dtype=dtype)}

    def param_shapes(self, input_size, hidden):
        return {"theta": (1,)}

    def initial_state(self, batch, hidden, dtype):
        return np.ones((batch, hidden), dtype=dtype)

    def input_projection(self, params, X):
        _, u = self.system(self.n, X.dtype)
        return X[..., :1] * (params["theta"][0] * u)

    def forward(self, params, xproj, state0):
        T, B, n = xproj.shape
        A, _ = self.system(n, xproj.dtype)
        states = np.empty((T + 1, B, n), dtype=xproj.dtype)
        states[0] = state0
        AT = A.T.copy()
        for t in range(T):
            np.matmul(states[t], AT, out=states[t + 1])
            states[t + 1] += xproj[t]
        return states, {"H": n, "A": A}

    def prepare_backward(self, params, states, cache):
        return cache

    def backward_step(self, params, cache, t, delta, outs, K, out):
        outs[0][...] = delta
        return np.matmul(delta, cache["A"], out=out)

    def param_grads(self, params, X, states, cache, stores, K):
        T, B, _ = X.shape
        n = cache["H"]
        _, u = self.system(n, X.dtype)
        P = stores[0].reshape(T, B, K, n)
        dtheta = np.einsum("tbkn,tb,n->k", P, X[..., 0], u)
        return {"theta": dtheta[:, None]}


CELLS = {c.name: c for c in (Linear, Tanh, GRU, LSTM, Influence)}


def get_cell(name, **kwargs):
    """Instantiate a cell by name; unknown names list the valid ones."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(sorted(CELLS))}") from None
    return cls(**kwargs)
