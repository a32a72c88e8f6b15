"""The peer benchmark computes the same thing on both sides (skipped without torch)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import peer  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed (optional extra 'peer')")
@pytest.mark.parametrize("cell", ["tanh", "gru"])
@pytest.mark.parametrize("estimator", ["full", "regular:4", "randomized"])
def test_torch_and_bptt_gradients_agree(cell, estimator):
    import torch

    Scratch, _ = peer.torch_modules(torch)
    H, B, T = 16, 8, 12
    X, Y, mask = peer.make_batch(B, T)
    ours = peer.BpttStep(cell, H)
    theirs = Scratch(cell, ours.params)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    if estimator == "full":
        _, G = ours.grad((X, Y, mask))
        ref = theirs.grads(Xt, Yt)
    elif estimator == "regular:4":
        from bptt import estimators as E

        _, G = ours.grad((X, Y, mask), E.Regular(4))
        ref = theirs.grads(Xt, Yt, detach_every=4)
    else:
        from bptt import estimators as E

        est = E.parse_estimator("randomized:constant:3")
        _, G = ours.grad((X, Y, mask), est, K=1, rng=np.random.default_rng(5))
        m = est.schedule.multipliers(est.schedule.sample_cuts(T, np.random.default_rng(5), size=1))[0]
        ref = theirs.grads(Xt, Yt, multipliers=m)
    assert np.linalg.norm(G[0] - ref) / np.linalg.norm(ref) < 1e-4


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed (optional extra 'peer')")
def test_torch_nn_rnn_matches_the_tanh_cell():
    import torch

    from bptt import estimators as E

    H, B, T = 16, 8, 12
    X, Y, mask = peer.make_batch(B, T)
    ours = peer.BpttStep("tanh", H)
    p = ours.params
    rnn = torch.nn.RNN(peer.V, H)
    out = torch.nn.Linear(H, peer.V)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["W_x"].T))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["W_h"].T))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
        rnn.bias_hh_l0.zero_()
        out.weight.copy_(torch.from_numpy(p["W_o"].T))
        out.bias.copy_(torch.from_numpy(p["b_o"]))
    h, _ = rnn(torch.nn.functional.one_hot(torch.from_numpy(X), peer.V).float())
    loss = torch.nn.functional.cross_entropy(out(h).reshape(-1, peer.V), torch.from_numpy(Y).reshape(-1))
    loss.backward()
    _, G = ours.grad((X, Y, mask), E.Full())
    got = ours.model.unflatten(G[0])
    np.testing.assert_allclose(got["W_h"], rnn.weight_hh_l0.grad.numpy().T, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["W_o"], out.weight.grad.numpy().T, rtol=1e-4, atol=1e-7)


def test_without_torch_the_benchmark_explains_how_to_install(tmp_path):
    """Run peer.py with torch hidden: it names the extra and exits non-zero."""
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('torch hidden for this test')\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "peer.py"), "--quick"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"})
    assert out.returncode != 0
    assert 'pip install -e ".[peer]"' in out.stderr
