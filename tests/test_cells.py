"""Every cell's hand-derived backward against central finite differences (float64)."""

import numpy as np
import pytest

from bptt import Model, estimators as E
from bptt.engine.cells import get_cell


def finite_difference(model, params, batch, eps=1e-6):
    flat = model.flatten(params)
    fd = np.zeros_like(flat)
    for i in range(flat.size):
        f = flat.copy()
        f[i] += eps
        lp, _ = E.sample(model, model.unflatten(f), batch, E.Full())
        f[i] -= 2 * eps
        lm, _ = E.sample(model, model.unflatten(f), batch, E.Full())
        fd[i] = (lp - lm) / (2 * eps)
    return fd


@pytest.mark.parametrize("cell", ["linear", "tanh", "gru", "lstm"])
@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_backward_matches_finite_differences(small_problem, cell, loss):
    model, params, batch = small_problem(cell=cell, T=6, B=2, V=4, H=3, loss=loss)
    # scale the weights up so that the nonlinearities are exercised away from 0
    params = {k: 1.5 * v for k, v in params.items()}
    _, G = E.sample(model, params, batch, E.Full())
    fd = finite_difference(model, params, batch)
    got = model.unflatten(G[0])
    want = model.unflatten(fd)
    for name in model.param_shapes():
        err = np.linalg.norm(got[name] - want[name]) / np.linalg.norm(want[name])
        assert err < 1e-6, (cell, name, err)


def test_influence_cell_matches_finite_differences():
    model = Model("influence", 1, 23, 1, loss="mse", trainable_readout=False,
                  cell_options={"n": 23})
    params = model.init(np.random.default_rng(0))
    T = 30
    batch = (np.ones((T, 1, 1)), np.ones((T, 1, 1)), np.ones((T, 1)))
    _, G = E.sample(model, params, batch, E.Full())
    fd = finite_difference(model, params, batch)
    assert abs(G[0, 0] - fd[0]) / abs(fd[0]) < 1e-6


@pytest.mark.parametrize("cell", ["linear", "tanh", "gru", "lstm"])
def test_float32_keeps_dtype_and_agrees_with_float64(small_problem, cell):
    model, params, batch = small_problem(cell=cell, T=10, B=4, V=5, H=6)
    _, G64 = E.sample(model, params, batch, E.Full())
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    _, G32 = E.sample(model, p32, batch, E.Full())
    assert G32.dtype == np.float32
    assert np.linalg.norm(G32 - G64) / np.linalg.norm(G64) < 1e-4


def test_linear_cell_matches_chapter_closed_form(small_problem):
    """d2l §9.7: ∂L/∂h_t = Σ_{s>=t} (W_hhᵀ)^{s-t} W_qhᵀ ∂L/∂o_s, ∂L/∂W_hh = Σ_t ∂L/∂h_t h_{t-1}ᵀ.

    Written here in the column convention of the chapter, independently of the engine.
    """
    T, B, V, H = 7, 2, 4, 3
    model, params, batch = small_problem(cell="linear", T=T, B=B, V=V, H=H)
    X, Y, mask = batch
    _, G = E.sample(model, params, batch, E.Full())
    got = model.unflatten(G[0])["W_h"]

    W_hx, W_hh, b = params["W_x"].T, params["W_h"].T, params["b"]
    W_qh, b_q = params["W_o"].T, params["b_o"]
    dW_hh = np.zeros((H, H))
    for j in range(B):
        h = [np.zeros(H)]
        for t in range(T):
            h.append(W_hx @ X[t, j] + W_hh @ h[-1] + b)
        dL_do = []
        for t in range(T):
            o = W_qh @ h[t + 1] + b_q
            p = np.exp(o - o.max())
            p /= p.sum()
            p[Y[t, j]] -= 1.0
            dL_do.append(p / (T * B))
        for t in range(1, T + 1):
            dL_dh = sum(
                np.linalg.matrix_power(W_hh.T, s - t) @ W_qh.T @ dL_do[s - 1]
                for s in range(t, T + 1)
            )
            dW_hh += np.outer(dL_dh, h[t - 1])
    # the engine stores W_h = W_hhᵀ
    np.testing.assert_allclose(got, dW_hh.T, rtol=1e-12, atol=1e-14)


def test_unknown_cell_lists_valid_names():
    with pytest.raises(ValueError, match="gru.*linear.*lstm.*tanh"):
        get_cell("elman")


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_token_ids_equal_one_hot_inputs(small_problem, cell):
    model, params, (X, Y, mask) = small_problem(cell=cell, T=7, B=3, V=5, H=4)
    ids = X.argmax(-1)
    _, dense = E.sample(model, params, (X, Y, mask), E.Full())
    _, sparse = E.sample(model, params, (ids, Y, mask), E.Full())
    np.testing.assert_allclose(sparse, dense, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="token ids must lie in"):
        model.forward(params, ids + 5)
