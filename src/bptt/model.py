"""A recurrent model: a cell, a linear readout and a loss.

``o_t = state_t[:, :H] @ W_o + b_o``.  The readout and the loss act on all T steps at
once (outside the time loop).  For the influence task the readout is frozen to pick
the first unit (``trainable_readout=False``), so θ is the only parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cells import get_cell
from .losses import LOSSES, class_major_targets


@dataclass
class Forward:
    """Everything the backward pass needs from one forward pass."""

    X: np.ndarray  # (T, B, D)
    states: np.ndarray  # (T+1, B, S)
    cache: dict
    outputs_cm: np.ndarray  # (V, T*B): class-major outputs, the layout of the losses

    @property
    def outputs(self):
        """(T, B, V) view of the outputs."""
        T, B = self.states.shape[0] - 1, self.states.shape[1]
        return self.outputs_cm.T.reshape(T, B, -1)

    def loss(self, Y, mask, loss="xent"):
        """Loss value only (evaluation)."""
        return LOSSES[loss](self.outputs_cm, class_major_targets(Y, loss), mask)[0]


@dataclass
class Model:
    """cell name, sizes and loss. ``cell_options`` are passed to the cell constructor."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    loss: str = "xent"
    trainable_readout: bool = True
    cell_options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rnn = get_cell(self.cell, **self.cell_options)
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid losses: {', '.join(LOSSES)}")
        for name in ("input_size", "hidden_size", "output_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    # -- parameters -----------------------------------------------------------
    def param_shapes(self):
        """Ordered {name: shape} of the trainable parameters (the flattening order)."""
        shapes = dict(self.rnn.param_shapes(self.input_size, self.hidden_size))
        if self.trainable_readout:
            shapes["W_o"] = (self.hidden_size, self.output_size)
            shapes["b_o"] = (self.output_size,)
        return shapes

    @property
    def n_params(self):
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    def init(self, rng, dtype=np.float64):
        params = self.rnn.init(self.input_size, self.hidden_size, rng, dtype)
        s = 1.0 / np.sqrt(self.hidden_size)
        if self.trainable_readout:
            params["W_o"] = rng.uniform(-s, s, (self.hidden_size, self.output_size)).astype(dtype)
            params["b_o"] = np.zeros(self.output_size, dtype=dtype)
        return params

    def readout(self, params):
        if self.trainable_readout:
            return params["W_o"], params["b_o"]
        dt = next(iter(params.values())).dtype
        W = np.zeros((self.hidden_size, self.output_size), dtype=dt)
        W[: self.output_size, : self.output_size] = np.eye(self.output_size, dtype=dt)
        return W, np.zeros(self.output_size, dtype=dt)

    def flatten(self, grads, K=None):
        """{name: (K, *shape)} -> (K, n_params); {name: shape} -> (n_params,)."""
        names = self.param_shapes()
        if K is None:
            return np.concatenate([np.ravel(grads[n]) for n in names])
        return np.concatenate([grads[n].reshape(K, -1) for n in names], axis=1)

    def unflatten(self, flat):
        out, i = {}, 0
        for n, s in self.param_shapes().items():
            size = int(np.prod(s))
            out[n] = flat[i : i + size].reshape(s)
            i += size
        return out

    # -- passes ---------------------------------------------------------------
    def forward(self, params, X):
        """X (T, B, D) floats, or (T, B) integer token ids standing for one-hot inputs
        -> Forward (states (T+1, B, S), outputs (T, B, V))."""
        dt = params[next(iter(params))].dtype
        if X.ndim == 2 and np.issubdtype(X.dtype, np.integer):
            T, B = X.shape
            if X.size and (X.min() < 0 or X.max() >= self.input_size):
                raise ValueError(f"token ids must lie in [0, {self.input_size})")
        else:
            T, B, D = X.shape
            if D != self.input_size:
                raise ValueError(f"input has {D} features, model expects {self.input_size}")
            X = X.astype(dt, copy=False)
        xproj = self.rnn.input_projection(params, X)
        state0 = self.rnn.initial_state(B, self.hidden_size, dt)
        states, cache = self.rnn.forward(params, xproj, state0)
        W_o, b_o = self.readout(params)
        hidden = states[1:, :, : self.hidden_size].reshape(T * B, -1)
        outputs = W_o.T @ hidden.T
        outputs += b_o[:, None]
        return Forward(X, states, cache, outputs)

    def loss_and_seed(self, params, fwd, Y, mask):
        """Loss value, the per-step seed ``∂L/∂state_t`` (T, B, S) and readout grads.

        The seed is what every estimator injects at each step; the readout gradient is
        exact for every estimator (it does not go through time).
        """
        loss, dout = LOSSES[self.loss](fwd.outputs_cm, class_major_targets(Y, self.loss), mask)
        T1, B, S = fwd.states.shape
        T, H = T1 - 1, self.hidden_size
        W_o, _ = self.readout(params)
        dh = dout.T @ W_o.T  # (T*B, H)
        if S == H:
            seed = dh.reshape(T, B, H)
        else:
            seed = np.zeros((T, B, S), dtype=fwd.states.dtype)
            seed[..., :H] = dh.reshape(T, B, H)
        readout_grads = {}
        if self.trainable_readout:
            hidden = fwd.states[1:, :, :H].reshape(T * B, H)
            ones = np.ones(T * B, dtype=dout.dtype)
            readout_grads = {"W_o": hidden.T @ dout.T, "b_o": dout @ ones}
        return loss, seed, readout_grads
