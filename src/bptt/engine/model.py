"""A recurrent model: a cell, a linear readout and a loss.

``o_t = state_t[:, :H] @ W_o + b_o``.  The readout and the loss act on all T steps at
once (outside the time loop).  For the influence task the readout is frozen to pick
the first unit (``trainable_readout=False``), so θ is the only parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cells import Record, get_cell
from .losses import LOSSES, class_major_targets


@dataclass
class Forward:
    """Everything the backward pass needs from one forward pass.

    From ``Model.forward_group`` every array has a leading replica axis R; from
    ``Model.forward`` (one run) it has none.  ``stacked()`` and ``replica(r)`` convert
    between the two without copying.
    """

    X: np.ndarray  # (R, T, B, D) floats or (R, T, B) token ids
    record: Record  # the cell's forward record; record.states (R, T+1, B, S)
    outputs_cm: np.ndarray  # (R, V, T*B): class-major outputs, the layout of the losses
    grouped: bool = True

    @property
    def states(self):
        return self.record.states

    @property
    def outputs(self):
        """(T, B, V) view of one run's outputs ((R, T, B, V) for a group)."""
        T1, B = self.states.shape[-3:-1]
        return np.swapaxes(self.outputs_cm, -1, -2).reshape(self.outputs_cm.shape[:-2] + (T1 - 1, B, -1))

    def replica(self, r):
        """Replica r as a one-run Forward (views)."""
        return Forward(self.X[r], self.record.map(lambda a: a[r]), self.outputs_cm[r], grouped=False)

    def take(self, idx):
        """The replicas ``idx`` (an index array) as a group."""
        return Forward(self.X[idx], self.record.map(lambda a: a[idx]), self.outputs_cm[idx])

    def stacked(self):
        """This Forward with a replica axis (R = 1 for one run; views)."""
        if self.grouped:
            return self
        return Forward(self.X[None], self.record.map(lambda a: a[None]), self.outputs_cm[None])

    def loss(self, Y, mask, loss="xent"):
        """Loss value only (evaluation): a float for one run, (R,) for a group."""
        fwd = self.stacked()
        if not self.grouped:
            Y, mask = Y[None], mask[None]
        values, _ = LOSSES[loss](fwd.outputs_cm, class_major_targets(Y, loss), mask)
        return values if self.grouped else float(values[0])


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
        """(W_o (H, V), b_o (V,)); with a replica axis if ``params`` are stacked and trained."""
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
        """(n_params,) -> {name: shape}, or (R, n_params) -> {name: (R, *shape)}; views."""
        out, i = {}, 0
        lead = flat.shape[:-1]
        for n, s in self.param_shapes().items():
            size = int(np.prod(s))
            out[n] = flat[..., i : i + size].reshape(lead + tuple(s))
            i += size
        return out

    # -- passes ---------------------------------------------------------------
    def forward(self, params, X, state0=None):
        """One run: X (T, B, D) floats, or (T, B) integer token ids standing for one-hot
        inputs -> Forward (states (T+1, B, S), outputs (T, B, V)).  R = 1 of ``forward_group``.

        ``state0`` (B, S) replaces the cell's initial state (to rerun a piece of a sequence)."""
        X = np.asarray(X)
        if X.ndim not in (2, 3):
            raise ValueError(f"X must be (T, B) token ids or (T, B, D) floats, got shape {X.shape}")
        stacked = {k: v[None] for k, v in params.items()}
        return self.forward_group(stacked, X[None], None if state0 is None else state0[None]).replica(0)

    def forward_group(self, params, X, state0=None):
        """R replicas: params {name: (R, *shape)}, X (R, T, B, D) floats or (R, T, B) token
        ids, state0 (R, B, S) or None for the cell's initial state -> Forward with a
        replica axis (states (R, T+1, B, S), outputs_cm (R, V, T*B))."""
        dt = params[next(iter(params))].dtype
        R = params[next(iter(params))].shape[0]
        if X.ndim == 3 and np.issubdtype(X.dtype, np.integer):
            _, T, B = X.shape
            if X.size and (X.min() < 0 or X.max() >= self.input_size):
                raise ValueError(f"token ids must lie in [0, {self.input_size})")
        else:
            _, T, B, D = X.shape
            if D != self.input_size:
                raise ValueError(f"input has {D} features, model expects {self.input_size}")
            X = X.astype(dt, copy=False)
        if X.shape[0] != R:
            raise ValueError(f"inputs have {X.shape[0]} replicas, parameters {R}")
        xproj = self.rnn.input_projection(params, X)
        if state0 is None:
            state0 = self.rnn.initial_state(R, B, self.hidden_size, dt)
        record = self.rnn.forward(params, xproj, state0)
        W_o, b_o = self.readout(params)
        hidden = record.states[:, 1:, :, : self.hidden_size].reshape(R, T * B, -1)
        outputs = np.matmul(np.swapaxes(W_o, -1, -2), hidden.transpose(0, 2, 1))
        outputs += b_o[..., :, None]
        return Forward(X, record, outputs)

    def loss_and_seed(self, params, fwd, Y, mask):
        """One run: loss value, the per-step seed ``∂L/∂state_t`` (T, B, S) and readout grads.

        The seed is what every estimator injects at each step; the readout gradient is
        exact for every estimator (it does not go through time).
        """
        stacked = {k: v[None] for k, v in params.items()}
        loss, seed, ro = self.loss_and_seed_group(stacked, fwd.stacked(), Y[None], mask[None])
        return float(loss[0]), seed[0], {k: v[0] for k, v in ro.items()}

    def loss_and_seed_group(self, params, fwd, Y, mask):
        """R replicas: losses (R,), seeds (R, T, B, S), readout grads {name: (R, *shape)}."""
        losses, dout = LOSSES[self.loss](fwd.outputs_cm, class_major_targets(Y, self.loss), mask)
        R, T1, B, S = fwd.states.shape
        T, H = T1 - 1, self.hidden_size
        W_o, _ = self.readout(params)
        dh = np.matmul(dout.transpose(0, 2, 1), np.swapaxes(W_o, -1, -2))  # (R, T*B, H)
        if S == H:
            seed = dh.reshape(R, T, B, H)
        else:
            seed = np.zeros((R, T, B, S), dtype=fwd.states.dtype)
            seed[..., :H] = dh.reshape(R, T, B, H)
        readout_grads = {}
        if self.trainable_readout:
            hidden = fwd.states[:, 1:, :, :H].reshape(R, T * B, H)
            ones = np.ones(T * B, dtype=dout.dtype)
            readout_grads = {"W_o": np.matmul(hidden.transpose(0, 2, 1), dout.transpose(0, 2, 1)),
                             "b_o": np.matmul(dout, ones)}
        return losses, seed, readout_grads
