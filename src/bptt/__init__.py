"""bptt: backpropagation through time, full, truncated and randomized, in numpy.

Public API::

    from bptt import cells, schedules, estimators, Model
    model = Model("tanh", input_size=28, hidden_size=64, output_size=28)
    params = model.init(np.random.default_rng(0))
    loss, G = estimators.sample(model, params, (X, Y, mask),
                                estimators.parse_estimator("randomized:constant:8"),
                                K=64, rng=np.random.default_rng(1))

Shapes: inputs X (T, B, D), targets Y (T, B) integers (cross-entropy) or (T, B, V)
floats (squared error), mask (T, B); gradient samples (K, n_params) in the order of
``model.param_shapes()``.
"""

from .engine import backprop, cells, estimators, losses, schedules
from .engine.model import Forward, Model

__version__ = "0.1.0"
__all__ = ["Model", "Forward", "backprop", "cells", "estimators", "losses", "schedules"]
