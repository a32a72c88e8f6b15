"""Tasks: the vendored corpus, recall's targets, the influence system's sign change."""

import hashlib

import numpy as np
import pytest

from bptt.study import data
from bptt.study.data import TIMEMACHINE_SHA1, CorpusError, make_task


def test_timemachine_matches_d2l_preprocessing():
    task = make_task("timemachine")
    assert len(task.corpus) == 173_428
    assert len(data.VOCAB) == 28 and data.VOCAB[:3] == (" ", "<unk>", "a")
    text = "".join(data.VOCAB[i] for i in task.corpus[:30])
    assert text == "the time machine by h g wells "


def test_corrupted_corpus_fails_its_checksum(tmp_path):
    raw = (data.resources.files("bptt.study") / "data/timemachine.txt").read_bytes()
    assert hashlib.sha1(raw).hexdigest() == TIMEMACHINE_SHA1
    bad = tmp_path / "timemachine.txt"
    bad.write_bytes(raw.replace(b"Time Traveller", b"Time Travelled", 1))
    data.load_timemachine.cache_clear()
    try:
        with pytest.raises(CorpusError, match=f"expected {TIMEMACHINE_SHA1}"):
            data.load_timemachine(str(bad))
        with pytest.raises(CorpusError, match="missing"):
            data.load_timemachine(str(tmp_path / "absent.txt"))
    finally:
        data.load_timemachine.cache_clear()


def test_timemachine_batches_are_next_character_windows():
    task = make_task("timemachine")
    X, Y, mask = task.batch(np.random.default_rng(0), 4, 10)
    assert X.shape == (10, 4) and Y.shape == (10, 4) and mask.all()  # token ids
    np.testing.assert_array_equal(X[1:], Y[:-1])
    Xv, Yv, _ = task.eval_set(10, 3)
    np.testing.assert_array_equal(Xv[:, 0], task.split_ids["val"][:10])


def test_timemachine_splits_are_disjoint_blocks_of_d2l_size():
    task = make_task("timemachine")
    starts = [task.split_start[s] for s in data.SPLITS]
    ends = [task.split_start[s] + len(task.split_ids[s]) for s in data.SPLITS]
    assert starts == [0, 10_032, 15_064] and ends == [10_032, 15_064, 20_096]
    for s in data.SPLITS:  # the blocks are the corpus itself, in order
        np.testing.assert_array_equal(task.split_ids[s], task.corpus[task.split_start[s] : ends[data.SPLITS.index(s)]])
    # d2l's 10,000 training windows at T = 32 are exactly the windows of the train block
    assert task.windows_per_epoch(32) == 10_000
    # every window of every split lies inside its block: its last target is in the block
    for split in data.SPLITS:
        X, Y, _ = task.eval_set(16, None, split)
        assert X.shape[1] == (len(task.split_ids[split]) - 1) // 16
        np.testing.assert_array_equal(Y[-1, -1], task.split_ids[split][X.shape[1] * 16])
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        task.eval_set(16, None, "validation")
    with pytest.raises(ValueError, match="sequence length T=6000"):
        task.eval_set(6000, None, "val")


def test_timemachine_evaluation_predicts_every_character_of_the_split_once():
    task = make_task("timemachine")
    for split in ("val", "test"):
        ids = task.split_ids[split]
        X, Y, mask = task.eval_set(32, None, split)
        n = X.shape[1]
        np.testing.assert_array_equal(Y.T.ravel(), ids[1 : n * 32 + 1])  # each target once, in order
        np.testing.assert_array_equal(X.T.ravel(), ids[: n * 32])
        assert len(ids) - 1 - n * 32 < 32 and mask.all()
    # d2l's measure: windows at every offset (5,000 at T = 32)
    X, Y, _ = task.eval_set(32, None, "val", stride=1)
    assert X.shape == (32, 5_000)
    np.testing.assert_array_equal(X[:, 7], task.split_ids["val"][7:39])


def test_timemachine_epochs_visit_every_train_window_once_reproducibly():
    task = make_task("timemachine")
    T, B = 32, 1024
    n = task.windows_per_epoch(T)
    ids = task.split_ids["train"]
    stream = task.batches(np.random.default_rng(5), B, T)
    sizes, seen = [], []
    for _ in range(-(-n // B)):  # one epoch: ceil(n / B) minibatches, the last one partial
        X, Y, mask = next(stream)
        sizes.append(X.shape[1])
        np.testing.assert_array_equal(X[1:], Y[:-1])
        seen.append(np.vstack([X, Y[-1:]]).T)  # (b, T+1) windows
    assert sizes == [B] * (n // B) + [n % B]
    # the epoch is a permutation of all n windows (compared as sorted multisets of rows)
    seen = np.concatenate(seen)
    windows = np.lib.stride_tricks.sliding_window_view(ids, T + 1)[:n]
    def rows_sorted(a):
        return a[np.lexsort(a.T[::-1])]
    np.testing.assert_array_equal(rows_sorted(seen), rows_sorted(windows))
    assert not np.array_equal(seen, windows)  # shuffled
    nxt = next(stream)[0]
    assert nxt.shape[1] == B and not np.array_equal(nxt.T, seen[:B, :T])  # epoch 2: new order
    # same seed, same stream; another seed, another order
    first = next(task.batches(np.random.default_rng(5), B, T))[0]
    np.testing.assert_array_equal(first.T, seen[:B, :T])
    assert not np.array_equal(next(task.batches(np.random.default_rng(6), B, T))[0], first)


def test_recall_and_influence_splits():
    recall = make_task("recall", lag=3, alphabet=5)
    sets = {s: recall.eval_set(12, 20, s) for s in data.SPLITS}
    assert all(x.shape == (12, 20) for x, _, _ in sets.values())
    assert not np.array_equal(sets["val"][0], sets["test"][0])
    assert not np.array_equal(sets["val"][0], sets["train"][0])
    np.testing.assert_array_equal(recall.eval_set(12, 20, "test")[0], sets["test"][0])  # fixed
    assert recall.eval_set(12, None, "val")[0].shape == (12, 64)
    influence = make_task("influence")
    for s in data.SPLITS:  # deterministic: the one sequence is every split
        np.testing.assert_array_equal(influence.eval_set(30, None, s)[0], influence.batch(None, 1, 30)[0])


def test_recall_targets_are_inputs_lag_steps_back():
    task = make_task("recall", lag=3, alphabet=5)
    x, Y, mask = task.batch(np.random.default_rng(1), 6, 12)
    np.testing.assert_array_equal(Y[3:], x[:-3])
    assert not mask[:3].any() and mask[3:].all()
    with pytest.raises(ValueError, match="must exceed the lag"):
        task.batch(np.random.default_rng(1), 2, 3)


def test_influence_sensitivity_changes_sign():
    s = data.influence_sensitivity(600)
    assert (s[:39] > 0).all()  # short truncations see a positive effect of θ
    assert s[-1] == pytest.approx(-6.0, abs=1e-9)  # the true long-run effect is -6
    assert np.argmax(s < 0) + 1 == 41


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="timemachine, recall, influence"):
        make_task("copy")
