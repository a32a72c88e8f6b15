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


def test_timemachine_d2l_split_is_the_default_and_unchanged():
    default, d2l = make_task("timemachine"), make_task("timemachine", split="d2l")
    assert default.split == d2l.split == "d2l" and default.describe() == d2l.describe()
    assert data.CORPUS_SPLITS["d2l"] is data.SPLIT_CHARS  # the constants d2l's blocks come from
    assert data.SPLIT_CHARS == {"train": 10_032, "val": 5_032, "test": 5_032}
    start = 0
    for s in data.SPLITS:  # today's blocks: SPLIT_CHARS laid end to end from character 0
        np.testing.assert_array_equal(d2l.split_ids[s], d2l.corpus[start : start + data.SPLIT_CHARS[s]])
        assert d2l.split_start[s] == start
        start += data.SPLIT_CHARS[s]
    described = d2l.describe()
    assert described["split"] == "d2l" and described["train_characters"] == 10_032
    assert (described["val_start"], described["test_start"]) == (10_032, 15_064)


def test_timemachine_book_split_covers_the_book_in_disjoint_consecutive_blocks():
    task = make_task("timemachine", split="book")
    sizes = data.BOOK_SPLIT_CHARS
    assert sizes == {"train": 138_742, "val": 17_343, "test": 17_343}
    assert sum(sizes.values()) == len(task.corpus) == data.CORPUS_CHARACTERS
    # 80% / 10% / 10% of the book, each within one character
    for s, share in zip(data.SPLITS, (0.8, 0.1, 0.1)):
        assert abs(sizes[s] - share * len(task.corpus)) < 1
    starts = [task.split_start[s] for s in data.SPLITS]
    ends = [start + len(task.split_ids[s]) for start, s in zip(starts, data.SPLITS)]
    assert starts == [0, 138_742, 156_085] and ends == [138_742, 156_085, 173_428]
    assert starts[1:] == ends[:-1]  # consecutive and disjoint, no gap
    for s, start, end in zip(data.SPLITS, starts, ends):
        assert len(task.split_ids[s]) == sizes[s]
        np.testing.assert_array_equal(task.split_ids[s], task.corpus[start:end])
    described = task.describe()
    assert described["split"] == "book"
    assert {k: described[f"{k}_characters"] for k in data.SPLITS} == sizes
    assert task.windows_per_epoch(32) == 138_742 - 32


@pytest.mark.parametrize("T", [8, 33])
def test_timemachine_book_windows_lie_inside_their_block(T):
    task = make_task("timemachine", split="book")
    corpus = task.corpus
    rng = np.random.default_rng(0)

    def offsets(X, Y, split):
        """Where each window (T + 1 characters) starts in its block; checks the characters."""
        ids = task.split_ids[split]
        windows = np.vstack([X, Y[-1:]]).T  # (B, T + 1)
        table = np.lib.stride_tricks.sliding_window_view(ids, T + 1)
        found = []
        for w in windows:
            (hit,) = np.nonzero((table == w).all(axis=1))
            assert len(hit), f"a {split} window is not inside the {split} block"
            found.append(hit[0])
        return np.array(found)

    X, Y, _ = task.batch(rng, 64, T)  # training windows: inside the train block
    assert offsets(X, Y, "train").max() + T + 1 <= len(task.split_ids["train"])
    X, Y, _ = next(task.batches(rng, 64, T))
    offsets(X, Y, "train")
    for split in data.SPLITS:  # evaluation tiles: their first and last windows in the block
        X, Y, _ = task.eval_set(T, None, split)
        start, ids = task.split_start[split], task.split_ids[split]
        np.testing.assert_array_equal(X[:, 0], corpus[start : start + T])
        last = (X.shape[1] - 1) * T
        np.testing.assert_array_equal(Y[:, -1], ids[last + 1 : last + T + 1])
        assert last + T + 1 <= len(ids)


def test_unknown_timemachine_split_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown split 'paper'; valid splits: d2l, book"):
        make_task("timemachine", split="paper")
    with pytest.raises(ValueError, match="bad parameters"):  # recall has no split
        make_task("recall", split="book")


def test_long_blocks_are_evaluated_in_chunks_with_the_same_loss():
    """train.evaluate: the book's blocks in chunks (their weighted mean is the block's loss);
    d2l's blocks, at every T, in one pass exactly as before."""
    from bptt.engine import estimators as E
    from bptt.study.train import evaluate

    book, d2l = make_task("timemachine", split="book"), make_task("timemachine")
    model = book.make_model("tanh", 8)
    rng = np.random.default_rng(0)
    thetas = np.stack([model.flatten(model.init(rng)) for _ in range(2)])
    for T in (7, 32):
        for split in data.SPLITS:  # d2l: identical to one pass
            s = d2l.eval_set(T, None, split)
            assert s[2].size <= d2l.eval_chunk_tokens
            np.testing.assert_array_equal(evaluate(d2l, model, thetas, s)[0], E.group_evaluate(model, thetas, *s)[0])
    s = book.eval_set(16, None, "val")
    assert s[2].size > book.eval_chunk_tokens
    chunked, outputs = evaluate(book, model, thetas, s)
    np.testing.assert_allclose(chunked, E.group_evaluate(model, thetas, *s)[0], rtol=1e-12)
    assert outputs is None and chunked.shape == (2,)
