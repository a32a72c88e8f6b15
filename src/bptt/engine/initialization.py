"""Initialization schemes of a model's parameters.

``default``  the cell's own initialization (``Model.init``): U(−1/√H, 1/√H) for the
             weights and biases of the RNN cells and the readout weights (PyTorch's
             RNN modules), zero readout bias; θ0 = 0.5 for the influence system.
``normal``   d2l's RNNScratch / RNNLMScratch: every weight matrix N(0, σ²)
             (σ = ``scale``, d2l's sigma = 0.01), every bias zero.

Both draw only from the run's initialization stream, so a seed fixes them.
"""

from __future__ import annotations

import numpy as np

INITS = ("default", "normal")


def check_init(scheme, scale):
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; valid inits: {', '.join(INITS)}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"init_scale must be a finite number > 0, got {scale}")


def initialize(model, rng, dtype=np.float64, scheme="default", scale=0.01):
    """Parameters ``{name: array}`` of ``model`` under ``scheme`` (see the module doc)."""
    check_init(scheme, scale)
    if scheme == "default":
        return model.init(rng, dtype)
    if model.cell == "influence":
        raise ValueError("init 'normal' does not apply to the influence task: its θ0 = 0.5 is "
                         "part of the task (use init 'default')")
    params = {}
    for name, shape in model.param_shapes().items():
        if name.startswith("b"):  # b, b_o: biases start at zero
            params[name] = np.zeros(shape, dtype=dtype)
        else:
            params[name] = (scale * rng.standard_normal(shape)).astype(dtype)
    return params
