"""`python -m bptt` commands: help with defaults, tiny end-to-end runs, clear errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from bptt.cli import build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", ["corpus", "train", "gradstats", "lagprofile", "tables", "figures",
                                  "verdict", "report"])
def test_help_lists_every_option_with_its_default(name, capsys):
    sub = subcommands()[name]
    with pytest.raises(SystemExit):
        sub.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.option_strings[0] in text
        if not action.required and action.default is not None and action.default is not False:
            assert "(default:" in text


def test_top_level_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "bptt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("corpus", "train", "gradstats", "lagprofile"):
        assert cmd in out.stdout


def test_train_gradstats_lagprofile_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "recall", "--lag", "3", "--alphabet", "4", "--hidden", "8",
                 "--seq-len", "10", "--batch-size", "8", "--updates", "20", "--eval-every", "10",
                 "--estimator", "randomized:artbp:3", "--out", str(run), "--quiet"]) == 0
    final = json.loads((run / "final.json").read_text())
    assert final["estimator"] == "randomized-artbp(3)" and not final["diverged"]
    out = tmp_path / "g.csv"
    assert main(["gradstats", "--task", "recall", "--lag", "3", "--alphabet", "4", "--hidden", "8",
                 "--seq-len", "10", "--batch-size", "8", "--checkpoint", str(run / "params.npz"),
                 "--estimators", "regular:3,randomized:constant:3", "--samples", "8", "--batches",
                 "3", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert list(df["estimator"]) == ["full", "regular(3)", "randomized-constant(3)"]
    assert set(df["checkpoint"]) == {"params"}
    lp = tmp_path / "lp.csv"
    assert main(["lagprofile", "--radii", "0.5,1.5", "--seq-len", "8", "--seeds", "1",
                 "--out", str(lp)]) == 0
    assert len(pd.read_csv(lp)) == 2 * 2 * 8
    corpus = tmp_path / "corpus.json"
    assert main(["corpus", "--out", str(corpus)]) == 0
    assert json.loads(corpus.read_text())["characters"] == 173428


def test_bad_arguments_fail_with_a_clear_message(tmp_path, capsys):
    assert main(["train", "--estimator", "randomized:uniform:4", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "valid schedules: constant, minlen, power, artbp" in err
    assert not (tmp_path / "x").exists()
    assert main(["gradstats", "--estimators", "regular:2", "--batches", "1", "--out",
                 str(tmp_path / "g.csv")]) == 2
    assert "at least 2 batches" in capsys.readouterr().err
