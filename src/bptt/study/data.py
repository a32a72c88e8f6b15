"""Tasks: streams of (input, target, mask) batches with one loss and one metric.

Every task exposes

- ``batches(rng, B, T)``: the endless stream of training minibatches
  ``(X, Y, mask (T, B))``, X token ids (T, B) standing for one-hot inputs or dense
  inputs (T, B, D); reproducible from ``rng`` alone (the run's data stream);
- ``batch(rng, B, T)``: one minibatch of B training sequences drawn independently
  (fixed batches for the gradient statistics);
- ``eval_set(T, n=None, split)``: the fixed evaluation set of a split, ``"train"``,
  ``"val"`` or ``"test"``;
- ``make_model(cell, hidden)`` and ``metric(loss, outputs, Y, mask)``.

The tasks:

- ``timemachine``: character LM on H. G. Wells' *The Time Machine*, d2l's
  preprocessing (28 tokens).  Origin: d2l's ``TimeMachine`` dataset
  (http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt); the text ships in the
  package and is checked against its sha1 at load, nothing is downloaded.  Three
  disjoint blocks of consecutive characters (train, validation, test; d2l's sizes or
  the whole book 80/10/10, see ``TimeMachine``); training is epoch-style over every
  window of the train block, evaluation covers a whole block.
- ``recall``: random symbols, target at t is the input at t - L; no loss before L.
  Training draws fresh sequences; validation and test are fixed seeded sets of
  ``n`` sequences (disjoint seeds).
- ``influence``: Tallec & Ollivier's influence-balancing system (its own "cell").
  Deterministic: there is one sequence, so train = validation = test = that sequence.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources

import numpy as np

from ..engine.cells import influence_system
from ..engine.losses import accuracy
from ..engine.model import Model

TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
TIMEMACHINE_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
# d2l's Vocab sorts its tokens: ' ' < '<unk>' < 'a' .. 'z'
VOCAB = (" ", "<unk>") + tuple("abcdefghijklmnopqrstuvwxyz")
SPLITS = ("train", "val", "test")
# d2l's TimeMachine(batch_size, num_steps=32, num_train=10000, num_val=5000) takes the
# windows of num_steps + 1 characters at every offset, the first 10,000 for training and
# the next 5,000 for validation, so its validation windows overlap the last 32 training
# characters.  We keep d2l's sizes as blocks of characters: the train block is exactly
# the characters of d2l's 10,000 training windows at T = 32, and validation and test
# are the next two blocks of 5,032 characters (5,000 windows at T = 32 each).
SPLIT_CHARS = {"train": 10_032, "val": 5_032, "test": 5_032}
# The whole book (173,428 characters after preprocessing) in three consecutive blocks of
# 80%, 10% and 10%: train = floor(0.8 x 173,428) = 138,742 characters (0.8 x 173,428 =
# 138,742.4), validation = the next 17,343 (the nearest whole count to 10%), test = the
# remaining 17,343.  The counts sum to the whole corpus (tests/test_tasks.py checks it).
BOOK_SPLIT_CHARS = {"train": 138_742, "val": 17_343, "test": 17_343}
# TimeMachine(split=...): which blocks, by name.  d2l: the first 20,096 characters with
# d2l's sizes (the default, and the d2l anchor's); book: the whole book, 80/10/10.
CORPUS_SPLITS = {"d2l": SPLIT_CHARS, "book": BOOK_SPLIT_CHARS}
CORPUS_CHARACTERS = 173_428


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
            raw = resources.files("bptt.study").joinpath("data/timemachine.txt").read_bytes()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError as e:
        raise CorpusError(
            f"timemachine.txt is missing ({e.filename}); expected sha1 {TIMEMACHINE_SHA1}"
        ) from None
    verify_corpus(raw)
    return preprocess(raw.decode("utf-8"))


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def check_corpus_split(split):
    """The name of a timemachine split (``CORPUS_SPLITS``), or a ValueError listing them."""
    if split not in CORPUS_SPLITS:
        raise ValueError(f"timemachine: unknown split {split!r}; valid splits: {', '.join(CORPUS_SPLITS)}")
    return split


def split_starts(sizes):
    """{split: first character}: the blocks of ``sizes`` laid end to end from 0, in SPLITS order."""
    starts = np.cumsum([0] + [sizes[s] for s in SPLITS[:-1]])
    return {s: int(start) for s, start in zip(SPLITS, starts)}


class Task:
    name = "base"
    loss = "xent"
    metric_name = "loss"
    higher_is_better = False
    # a task with its own dynamics or data fixes these; None: the run's choice
    cell = None
    batch_size = None
    # True: the evaluation sets are samples whose size n the run chooses
    # (training.eval_sequences); False: eval_set(T, None, split) is the whole split
    sampled_eval_sets = False
    # None: evaluation sets are scored in one pass; else a set of more tokens is scored
    # in chunks of at most this many (train.evaluate; the metric must depend on the loss only)
    eval_chunk_tokens = None

    def make_model(self, cell, hidden):
        return Model(cell, self.input_size, hidden, self.output_size, loss=self.loss)

    def metric(self, loss, outputs, Y, mask):
        return loss

    def batches(self, rng, B, T):
        """Endless training minibatches; this default draws each one afresh."""
        while True:
            yield self.batch(rng, B, T)

    def windows_per_epoch(self, T):
        """Training sequences in one pass over the data; None for an endless stream."""
        return None

    def describe_params(self, theta, T):
        """Task-specific facts about trained parameters (flat ``theta``) for final.json."""
        return {}

    def describe(self):
        return {"task": self.name}


class TimeMachine(Task):
    """Character LM on three disjoint blocks of consecutive characters.

    The blocks (train, validation, test, in this order from the start of the book) are
    named by ``split``: ``"d2l"`` (``SPLIT_CHARS``: 10,032 / 5,032 / 5,032 characters,
    the first 20,096 of the book; the default) or ``"book"`` (``BOOK_SPLIT_CHARS``: the
    whole book, 138,742 / 17,343 / 17,343 characters, i.e. 80/10/10%).  They do not
    depend on T, and every window lies inside one block, so no character is ever seen
    in training and scored in evaluation.

    Training (``batches``) is epoch-style, as d2l's DataLoader(shuffle=True): every
    window of T + 1 characters at every offset of the train block, in a fresh random
    order each epoch, B at a time; the last minibatch of an epoch holds the remainder.
    Evaluation (``eval_set``) tiles a whole block with consecutive non-overlapping
    windows, so every character of the block (but the first) is predicted exactly once,
    from a zero state, with a context of 0..T-1 characters as in training.  d2l instead
    scores the windows at every offset (``stride=1``): the same average over positions
    in the window, T times the cost.
    """

    name = "timemachine"
    metric_name = "perplexity"
    input_size = output_size = len(VOCAB)
    # the book split's blocks (up to 138,742 characters) are scored in chunks no larger
    # than d2l's largest block (10,032 characters), which is scored in one pass as before
    eval_chunk_tokens = 10_240

    def __init__(self, split="d2l"):
        self.split = check_corpus_split(split)
        self.corpus = load_timemachine()
        self.split_start = split_starts(CORPUS_SPLITS[split])
        self.split_ids = {s: self.corpus[self.split_start[s] : self.split_start[s] + n]
                          for s, n in CORPUS_SPLITS[split].items()}
        self.chance = float(len(VOCAB) - 1)  # uniform over the 27 symbols that occur

    def _block(self, split, T):
        ids = self.split_ids[check_split(split)]
        if T < 1 or T + 1 > len(ids):
            raise ValueError(f"timemachine: sequence length T={T} must lie in 1..{len(ids) - 1} "
                             f"(the {split} block has {len(ids)} characters)")
        return ids

    def _window(self, ids, starts, T):
        idx = starts[None, :] + np.arange(T + 1)[:, None]
        seq = ids[idx]  # (T+1, B)
        return seq[:-1], seq[1:], np.ones((T, len(starts)))

    def windows_per_epoch(self, T):
        """Windows of T + 1 characters at every offset of the train block."""
        return len(self._block("train", T)) - T

    def batch(self, rng, B, T):
        """B windows of T+1 characters at uniform random offsets of the train block."""
        ids = self._block("train", T)
        return self._window(ids, rng.integers(0, len(ids) - T, size=B), T)

    def batches(self, rng, B, T):
        """Epochs over all ``windows_per_epoch(T)`` train windows, each in a fresh order."""
        ids = self._block("train", T)
        n = self.windows_per_epoch(T)
        while True:
            order = rng.permutation(n)
            for lo in range(0, n, B):
                yield self._window(ids, order[lo : lo + B], T)

    def eval_set(self, T, n=None, split="val", stride=None):
        """Windows at offsets 0, stride, 2·stride, ... of a block (default stride T: a tiling).

        ``n`` keeps only the first n windows (None: the whole block).
        """
        ids = self._block(split, T)
        stride = T if stride is None else int(stride)
        if stride < 1:
            raise ValueError(f"timemachine: stride must be >= 1, got {stride}")
        starts = np.arange(0, len(ids) - T, stride)
        if n is not None:
            if int(n) < 1:
                raise ValueError(f"timemachine: n must be >= 1 windows, got {n}")
            starts = starts[: int(n)]
        return self._window(ids, starts, T)

    def metric(self, loss, outputs, Y, mask):
        return float(np.exp(min(loss, 700.0)))

    def describe(self):
        return {
            "task": self.name,
            "split": self.split,
            "characters": int(len(self.corpus)),
            "vocabulary": len(VOCAB),
            **{f"{s}_characters": int(len(self.split_ids[s])) for s in SPLITS},
            **{f"{s}_start": self.split_start[s] for s in SPLITS},
            "sha1": TIMEMACHINE_SHA1,
        }


class Recall(Task):
    """Delayed recall: inputs uniform over ``alphabet`` symbols, target y_t = x_{t-lag}."""

    name = "recall"
    metric_name = "accuracy"
    higher_is_better = True
    sampled_eval_sets = True

    # the fixed evaluation sets: one seed per split, none shared with training streams
    EVAL_SEED_OFFSET = {"val": 0, "test": 1, "train": 2}
    DEFAULT_EVAL_SEQUENCES = 64

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

    def eval_set(self, T, n=None, split="val"):
        """A fixed set of n sequences per split (default 64), seeded by the split."""
        n = self.DEFAULT_EVAL_SEQUENCES if n is None else int(n)
        if n < 1:
            raise ValueError(f"recall: the evaluation set needs n >= 1 sequences, got {n}")
        rng = np.random.default_rng(self.eval_seed + self.EVAL_SEED_OFFSET[check_split(split)])
        return self.batch(rng, n, T)

    def metric(self, loss, outputs, Y, mask):
        """Accuracy; ``outputs`` are class-major (V, T*B)."""
        return accuracy(outputs, Y, mask)

    def describe(self):
        return {"task": self.name, "lag": self.lag, "alphabet": self.alphabet}


class Influence(Task):
    """Influence balancing: ``s_t = A s_{t-1} + θ u``, loss ``½ (s¹_t - 1)²``, θ0 = 0.5.

    Deterministic: every batch is the same single sequence, starting from s_0 = 1, so
    validation = test = training = that sequence (there is nothing held out).
    """

    name = "influence"
    loss = "mse"
    input_size = output_size = 1
    cell = "influence"
    batch_size = 1  # one deterministic sequence

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

    def eval_set(self, T, n=None, split="val"):
        """The one sequence, whatever the split (``n`` is meaningless here)."""
        check_split(split)
        return self.batch(None, 1, T)

    def optimum(self, T):
        """θ* minimizing the loss of the length-T sequence (closed form).

        The readout s¹_t = a_t + θ b_t is affine in θ, so the squared error is a parabola:
        ``θ* = Σ b (y − a) / Σ b²`` with a, b from two forward passes in float64.
        """
        model = self.make_model(None, None)
        X, Y, mask = self.batch(None, 1, T)
        a, one = (model.forward({"theta": np.array([th])}, X).outputs[..., 0] for th in (0.0, 1.0))
        b = one - a
        return float(np.sum(mask * b * (Y[..., 0] - a)) / np.sum(mask * b * b))

    def describe_params(self, theta, T):
        """θ of the trained run beside the θ* of its sequence length."""
        star = self.optimum(T)
        if theta is None:
            return {"theta": float("nan"), "theta_star": star}
        return {"theta": float(theta[0]), "theta_star": star}

    def describe(self):
        return {"task": self.name, "units": self.units, "positive": self.positive}


def influence_sensitivity(k, units=23, positive=10):
    """k-step truncated sensitivity of s¹ to θ: ``Σ_{j<k} (A^j u)_1`` (array over k=1..k)."""
    A, u = influence_system(units, positive)
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
