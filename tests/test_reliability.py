"""Commands fail before work on unwritable outputs, stop cleanly on SIGINT, and give
numbers that do not depend on the order in which estimators are listed."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import sigint_default

from bptt import estimators as E
from bptt.study import train as train_module
from bptt.study.cli import main
from bptt.study.data import make_task
from bptt.study.gradstats import gradient_stats

TINY = ["--task", "recall", "--lag", "3", "--alphabet", "4", "--hidden", "8", "--seq-len", "10",
        "--batch-size", "8", "--eval-every", "10", "--quiet"]


@pytest.mark.parametrize(
    "argv,option",
    [(["train", *TINY, "--out", "{file}/run"], "--out"),
     (["gradstats", "--estimators", "regular:2", "--out", "{file}/g.csv"], "--out"),
     (["lagprofile", "--out", "{dir}"], "--out"),
     (["tables", "--runs", "x", "--gradstats", "y", "--lagprofile", "z", "--out-dir", "{file}"],
      "--out-dir")],
)
def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, capsys, argv, option):
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a file, not a folder")

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(train_module, "train", no_work)
    monkeypatch.setattr("bptt.study.gradstats.gradient_stats", no_work)
    monkeypatch.setattr("bptt.study.lagprofile.lag_profiles", no_work)
    monkeypatch.setattr("bptt.study.tables.load_runs", no_work)
    argv = [a.format(file=blocker, dir=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} ") and str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker.txt"]


def test_sigint_stops_training_with_one_line_and_no_outputs(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bptt", "train", *TINY[:-1], "--updates", "1000000",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    first = proc.stderr.readline()  # the first progress line: training has started
    assert first.startswith("[train recall"), first
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    lines = [line for line in rest.splitlines() if not line.startswith("[train")]
    assert len(lines) == 1 and lines[0].startswith("interrupted: train"), rest
    assert not out.exists() or not list(out.iterdir())


def test_gradstats_do_not_depend_on_the_order_of_the_estimators():
    task = make_task("recall", lag=3, alphabet=4)
    model = task.make_model("tanh", 8)
    params = model.init(np.random.default_rng(0))
    specs = ["regular:3", "randomized:constant:3", "randomized:minlen:3", "randomized:power:3",
             "randomized:artbp:3"]

    def stats(order):
        ests = [E.parse_estimator(s) for s in order]
        df = gradient_stats(task, model, params, ests, seq_len=10, batch_size=4, K=6, n_batches=2,
                            seed=3)
        return df.set_index("estimator").sort_index()

    forward = stats(specs)
    backward = stats(specs[::-1])
    alone = stats(["randomized:power:3"])
    pd.testing.assert_frame_equal(forward, backward)
    pd.testing.assert_frame_equal(forward.loc[["randomized-power(3)"]],
                                  alone.loc[["randomized-power(3)"]])
    # the randomized rows are random (the comparison above is not trivially true)
    assert forward.loc["randomized-power(3)", "relative_variance"] > 0


def test_final_json_of_a_diverged_run_is_strict_json_with_reasons(tmp_path):
    out = tmp_path / "div"
    assert main(["train", "--task", "influence", "--seq-len", "20", "--optimizer", "sgd",
                 "--lr", "1000", "--clip", "0", "--updates", "30", "--eval-every", "5",
                 "--estimator", "full", "--out", str(out), "--quiet"]) == 0
    text = (out / "final.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    final = json.loads(text)
    assert final["diverged"] is True and final["final_val_metric"] is None
    assert final["null_reasons"]["final_val_metric"].startswith("diverged at update")
    assert final["chance"] is None and "no chance level" in final["null_reasons"]["chance"]
    assert np.isfinite(final["init_val_metric"])


def test_truncation_at_least_T_is_said_to_be_full_bptt(tmp_path, capsys):
    assert main(["train", *TINY, "--updates", "2", "--estimator", "regular:100",
                 "--out", str(tmp_path / "run")]) == 0
    assert "note: regular(100) with T=10 never cuts: it is full BPTT" in capsys.readouterr().err
