"""Tasks: streams of (input, target, mask) batches with one loss and one metric.

Every task exposes ``batch(rng, B, T) -> (X, Y, mask (T, B))``, with X either token
ids (T, B) standing for one-hot inputs or dense inputs (T, B, D), a fixed
evaluation set, ``make_model(cell, hidden)`` and ``metric(loss, outputs, Y, mask)``.

- ``timemachine``: character LM on H. G. Wells' *The Time Machine*, d2l's
  preprocessing (28 tokens).  Origin: d2l's ``TimeMachine`` dataset
  (http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt); the text ships in the
  package and is checked against its sha1 at load, nothing is downloaded.
- ``recall``: random symbols, target at t is the input at t - L; no loss before L.
- ``influence``: Tallec & Ollivier's influence-balancing system (its own "cell").
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources

import numpy as np

from .losses import accuracy
from .model import Model

TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
TIMEMACHINE_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
# d2l's Vocab sorts its tokens: ' ' < '<unk>' < 'a' .. 'z'
VOCAB = (" ", "<unk>") + tuple("abcdefghijklmnopqrstuvwxyz")
# Train on the first 90% of the characters, validate on the last 10% (split by
# position so that no validation text is ever seen in training).
TRAIN_FRACTION = 0.9


class CorpusError(ValueError):
    pass


def verify_corpus(raw: bytes, expected=TIMEMACHINE_SHA1):
    got = hashlib.sha1(raw).hexdigest()
    if got != expected:
        raise CorpusError(
            f"timemachine.txt is corrupted: sha1 {got}, expected {expected} "
            f"(the file shipped with the package, originally {TIMEMACHINE_URL}); "
            f"reinstall the package"
        )


def preprocess(text: str):
    """d2l: ``re.sub('[^A-Za-z]+', ' ', text).lower()``, characters as tokens."""
    clean = re.sub("[^A-Za-z]+", " ", text).lower()
    index = {ch: i for i, ch in enumerate(VOCAB)}
    return np.fromiter((index.get(c, 1) for c in clean), dtype=np.int64, count=len(clean))


@lru_cache(maxsize=1)
def load_timemachine(path=None):
    """Token ids (173,428,) of the verified corpus. ``path`` overrides the packaged file."""
    try:
        if path is None:
            raw = resources.files("bptt").joinpath("data/timemachine.txt").read_bytes()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError as e:
        raise CorpusError(
            f"timemachine.txt is missing ({e.filename}); expected sha1 {TIMEMACHINE_SHA1}"
        ) from None
    verify_corpus(raw)
    return preprocess(raw.decode("utf-8"))


class Task:
    name = "base"
    loss = "xent"
    metric_name = "loss"
    higher_is_better = False

    def make_model(self, cell, hidden):
        return Model(cell, self.input_size, hidden, self.output_size, loss=self.loss)

    def metric(self, loss, outputs, Y, mask):
        return loss

    def describe(self):
        return {"task": self.name}


class TimeMachine(Task):
    name = "timemachine"
    metric_name = "perplexity"
    input_size = output_size = len(VOCAB)

    def __init__(self):
        self.corpus = load_timemachine()
        self.boundary = int(len(self.corpus) * TRAIN_FRACTION)
        self.train_ids = self.corpus[: self.boundary]
        self.val_ids = self.corpus[self.boundary :]
        self.chance = float(len(VOCAB) - 1)  # uniform over the 27 symbols that occur

    def _window(self, ids, starts, T):
        idx = starts[None, :] + np.arange(T + 1)[:, None]
        seq = ids[idx]  # (T+1, B)
        return seq[:-1], seq[1:], np.ones((T, len(starts)))

    def batch(self, rng, B, T):
        """B windows of T+1 characters at uniform random positions of the train part."""
        starts = rng.integers(0, len(self.train_ids) - T - 1, size=B)
        return self._window(self.train_ids, starts, T)

    def eval_set(self, T, n, split="val"):
        """n non-overlapping consecutive windows from the start of the split (fixed)."""
        ids = self.val_ids if split == "val" else self.train_ids
        n = min(n, (len(ids) - 1) // T)
        return self._window(ids, np.arange(n) * T, T)

    def metric(self, loss, outputs, Y, mask):
        return float(np.exp(min(loss, 700.0)))

    def describe(self):
        return {
            "task": self.name,
            "characters": int(len(self.corpus)),
            "vocabulary": len(VOCAB),
            "train_characters": int(self.boundary),
            "val_characters": int(len(self.corpus) - self.boundary),
            "sha1": TIMEMACHINE_SHA1,
        }


class Recall(Task):
    """Delayed recall: inputs uniform over ``alphabet`` symbols, target y_t = x_{t-lag}."""

    name = "recall"
    metric_name = "accuracy"
    higher_is_better = True

    def __init__(self, lag=10, alphabet=8, eval_seed=12345):
        if int(lag) != lag or lag < 1:
            raise ValueError(f"recall: lag must be an integer >= 1, got {lag}")
        if int(alphabet) != alphabet or alphabet < 2:
            raise ValueError(f"recall: alphabet must be an integer >= 2, got {alphabet}")
        self.lag, self.alphabet = int(lag), int(alphabet)
        self.input_size = self.output_size = self.alphabet
        self.chance = 1.0 / self.alphabet
        self.eval_seed = eval_seed

    def batch(self, rng, B, T):
        if T <= self.lag:
            raise ValueError(f"recall: sequence length T={T} must exceed the lag {self.lag}")
        x = rng.integers(0, self.alphabet, size=(T, B))
        y = np.zeros_like(x)
        y[self.lag :] = x[: -self.lag]
        mask = np.zeros((T, B))
        mask[self.lag :] = 1.0
        return x, y, mask

    def eval_set(self, T, n, split="val"):
        offset = 0 if split == "val" else 1
        return self.batch(np.random.default_rng(self.eval_seed + offset), n, T)

    def metric(self, loss, outputs, Y, mask):
        """Accuracy; ``outputs`` are class-major (V, T*B)."""
        return accuracy(outputs, Y, mask)

    def describe(self):
        return {"task": self.name, "lag": self.lag, "alphabet": self.alphabet}


class Influence(Task):
    """Influence balancing: ``s_t = A s_{t-1} + θ u``, loss ``½ (s¹_t - 1)²``, θ0 = 0.5.

    Deterministic: every batch is the same single sequence, starting from s_0 = 1.
    """

    name = "influence"
    loss = "mse"
    input_size = output_size = 1

    def __init__(self, units=23, positive=10):
        if not 0 < positive <= units:
            raise ValueError(f"influence: need 0 < positive <= units, got {positive}, {units}")
        self.units, self.positive = int(units), int(positive)
        self.chance = float("nan")

    def make_model(self, cell, hidden):
        if cell not in (None, "influence"):
            raise ValueError(f"influence task has its own dynamics; cell must be 'influence', got {cell!r}")
        return Model("influence", 1, self.units, 1, loss="mse", trainable_readout=False,
                     cell_options={"n": self.units, "positive": self.positive})

    def batch(self, rng, B, T):
        return np.ones((T, 1, 1)), np.ones((T, 1, 1)), np.ones((T, 1))

    def eval_set(self, T, n, split="val"):
        return self.batch(None, 1, T)

    def describe(self):
        return {"task": self.name, "units": self.units, "positive": self.positive}


def influence_sensitivity(k, units=23, positive=10):
    """k-step truncated sensitivity of s¹ to θ: ``Σ_{j<k} (A^j u)_1`` (array over k=1..k)."""
    A = 0.5 * np.eye(units) + 0.5 * np.eye(units, k=1)
    u = -np.ones(units)
    u[:positive] = 1.0
    out, v = np.empty(k), u.copy()
    total = 0.0
    for j in range(k):
        total += v[0]
        out[j] = total
        v = A @ v
    return out


TASKS = {"timemachine": TimeMachine, "recall": Recall, "influence": Influence}


def make_task(name, **params):
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"task {name!r}: bad parameters {params}: {e}") from None
