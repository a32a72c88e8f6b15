"""Output files: ordinary permissions, strict JSON, sets of files written whole."""

import json
import math
import os
import signal
import stat

import numpy as np
import pandas as pd
import pytest

from bptt.study.io import (interrupts_deferred, read_json, write_csv, write_json, write_npz,
                     write_rows_csv, write_text)


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    write_csv(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
    write_rows_csv(tmp_path / "c.csv", [{"x": 1}])
    write_npz(tmp_path / "d.npz", theta=np.zeros(2))
    write_text(tmp_path / "e.html", "<p>")
    for name in ("a.json", "b.csv", "c.csv", "d.npz", "e.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_json_has_no_nan_and_says_why(tmp_path):
    path = tmp_path / "final.json"
    write_json(path, {"loss": float("nan"), "metric": np.float32("inf"), "ok": 1.5,
                      "curve": [1.0, float("-inf")], "chance": float("nan"),
                      "null_reasons": {"chance": "no chance level"}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    raw = json.loads(text)  # strict JSON
    assert raw["loss"] is None and raw["metric"] is None and raw["curve"] == [1.0, None]
    assert raw["null_reasons"] == {"loss": "non-finite value (nan)", "metric": "non-finite value (inf)",
                                   "curve.1": "non-finite value (-inf)", "chance": "no chance level"}
    back = read_json(path)
    assert math.isnan(back["loss"]) and math.isnan(back["metric"]) and math.isnan(back["curve"][1])
    assert back["ok"] == 1.5 and math.isnan(back["chance"])


def test_interrupt_is_held_until_the_files_are_written(tmp_path, sigint_raises):
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            write_text(tmp_path / "a.txt", "a")
            write_text(tmp_path / "b.txt", "b")
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "b.txt").read_text() == "b"
    assert not list(tmp_path.glob(".*"))
