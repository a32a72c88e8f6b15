"""Tasks: the vendored corpus, recall's targets, the influence system's sign change."""

import hashlib

import numpy as np
import pytest

from bptt import data
from bptt.data import TIMEMACHINE_SHA1, CorpusError, make_task


def test_timemachine_matches_d2l_preprocessing():
    task = make_task("timemachine")
    assert len(task.corpus) == 173_428
    assert len(data.VOCAB) == 28 and data.VOCAB[:3] == (" ", "<unk>", "a")
    text = "".join(data.VOCAB[i] for i in task.corpus[:30])
    assert text == "the time machine by h g wells "
    assert task.boundary == int(0.9 * 173_428)


def test_corrupted_corpus_fails_its_checksum(tmp_path):
    raw = (data.resources.files("bptt") / "data/timemachine.txt").read_bytes()
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
    np.testing.assert_array_equal(Xv[:, 0], task.val_ids[:10])


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
