"""Initialization schemes: d2l's N(0, σ²) with zero biases, and the cells' default."""

import numpy as np
import pytest

from bptt.study.data import make_task
from bptt.engine.initialization import initialize
from bptt.engine.model import Model


def test_normal_init_is_d2l_scheme():
    model = Model("tanh", 28, 200, 28)
    p = initialize(model, np.random.default_rng(0), np.float32, "normal", 0.01)
    assert set(p) == {"W_x", "W_h", "b", "W_o", "b_o"} and all(v.dtype == np.float32 for v in p.values())
    assert not p["b"].any() and not p["b_o"].any()
    for name in ("W_x", "W_h", "W_o"):
        assert p[name].shape == model.param_shapes()[name]
        assert abs(p[name].mean()) < 1e-3 and p[name].std() == pytest.approx(0.01, rel=0.05)
    again = initialize(model, np.random.default_rng(0), np.float32, "normal", 0.01)
    assert all(np.array_equal(p[k], again[k]) for k in p)


def test_default_init_is_the_models_own():
    model = Model("gru", 5, 7, 5)
    a = initialize(model, np.random.default_rng(3), np.float64)
    b = model.init(np.random.default_rng(3), np.float64)
    assert all(np.array_equal(a[k], b[k]) for k in b)


def test_bad_inits_fail_clearly():
    model = Model("tanh", 4, 3, 4)
    with pytest.raises(ValueError, match="valid inits: default, normal"):
        initialize(model, np.random.default_rng(0), scheme="xavier")
    with pytest.raises(ValueError, match="init_scale must be"):
        initialize(model, np.random.default_rng(0), scheme="normal", scale=0.0)
    influence = make_task("influence").make_model("influence", None)
    with pytest.raises(ValueError, match="θ0 = 0.5 is part of the task"):
        initialize(influence, np.random.default_rng(0), scheme="normal")
