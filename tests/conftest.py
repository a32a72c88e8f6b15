import numpy as np
import pytest

from bptt import Model


def make_batch(rng, T, B, V, loss="xent"):
    X = np.eye(V)[rng.integers(0, V, (T, B))]
    if loss == "xent":
        Y = rng.integers(0, V, (T, B))
    else:
        Y = rng.normal(size=(T, B, V))
    mask = np.ones((T, B))
    return X, Y, mask


@pytest.fixture
def small_problem():
    """A tiny tanh model and batch in float64."""

    def build(cell="tanh", T=8, B=3, V=4, H=3, loss="xent", seed=0):
        rng = np.random.default_rng(seed)
        model = Model(cell, V, H, V, loss=loss)
        params = model.init(np.random.default_rng(seed + 1))
        return model, params, make_batch(rng, T, B, V, loss)

    return build


def sigint_default():
    """``preexec_fn`` for a child that must be interruptible: a shell that starts a job in
    the background (as some CI runners do) passes SIGINT on as ignored, and Python keeps
    an ignored SIGINT ignored, so Ctrl-C tests would see nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process during the test, even where the
    test runner was started with SIGINT ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
