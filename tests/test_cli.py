"""`python -m bptt` commands: help with defaults, tiny end-to-end runs, clear errors."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from bptt.study.cli import main


def help_text(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def commands(capsys):
    """The commands listed by ``python -m bptt --help``."""
    text = help_text([], capsys)
    block = text.split("positional arguments:")[1].split("options:")[0]
    return re.findall(r"^ {4}(\w[\w-]*)", block, flags=re.M)


def option_entries(text):
    """{option: its help entry} from an argparse help text."""
    entries, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_every_command_is_listed(capsys):
    assert {"corpus", "train", "gradstats", "lagprofile", "tables", "verdict", "figures",
            "report"} <= set(commands(capsys))


def test_help_lists_every_option_with_its_default(capsys):
    for name in commands(capsys):
        text = help_text([name], capsys)
        usage = " ".join(text.split("options:")[0].split())
        entries = option_entries(text)
        used = set(re.findall(r"(?<![\w-])(--[\w-]+)", usage)) - {"--help"}
        assert used and used <= set(entries), name
        for option in used:
            assert "(default:" in entries[option], f"{name} {option}: {entries[option]}"


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


def test_malloc_tuning_is_the_command_lines_not_the_librarys(tmp_path):
    """Importing bptt leaves glibc's malloc alone; running a command tunes it."""
    probe = f"""
import ctypes, sys
calls = []
real = ctypes.CDLL
def spy(name, *a, **k):
    lib = real(name, *a, **k)
    if "libc" in str(name):
        calls.append(name)
    return lib
ctypes.CDLL = spy
import bptt, bptt.engine.estimators, bptt.study.train, bptt.study.gradstats, bptt.study.cli
assert calls == [], calls
assert bptt.study.cli.main(["corpus", "--out", {str(tmp_path / "corpus.json")!r}]) == 0
assert calls, "the command line tunes malloc"
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "BPTT_NO_MALLOC_TUNING"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr


def test_the_command_line_uses_one_blas_thread_unless_told_otherwise():
    """By hand, `python -m bptt` runs single-threaded BLAS like the pipeline's jobs do; an
    explicit OPENBLAS/OMP/MKL_NUM_THREADS is the user's choice and is left alone."""
    from bptt.study.cli import limit_blas_threads

    assert limit_blas_threads({"OMP_NUM_THREADS": "2"}) is None
    code = ("from bptt.study.cli import limit_blas_threads; limit_blas_threads(); "
            "from threadpoolctl import threadpool_info; "
            "print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                           "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_split_travels_from_the_command_line_to_the_runs_table(tmp_path, capsys):
    from bptt.study.tables import load_runs

    runs = {}
    for split in ("d2l", "book"):
        run = runs[split] = tmp_path / split
        assert main(["train", "--task", "timemachine", "--split", split, "--hidden", "8", "--seq-len", "8",
                     "--batch-size", "8", "--updates", "4", "--eval-every", "2", "--out", str(run),
                     "--quiet"]) == 0
        final = json.loads((run / "final.json").read_text())
        assert final["config"]["split"] == final["data"]["split"] == split
    table, _ = load_runs([runs[s] / "final.json" for s in ("d2l", "book")])
    by_split = table.set_index("split")
    assert by_split.loc["d2l", "train_characters"] == 10_032
    assert by_split.loc["book", "train_characters"] == 138_742
    assert by_split.loc["book", "test_characters"] == 17_343
    out = tmp_path / "g.csv"
    assert main(["gradstats", "--task", "timemachine", "--split", "book", "--hidden", "8", "--seq-len", "8",
                 "--batch-size", "4", "--checkpoint", str(runs["book"] / "params.npz"),
                 "--estimators", "regular:2", "--samples", "2", "--batches", "2", "--out", str(out),
                 "--quiet"]) == 0
    corpus = tmp_path / "corpus.json"
    assert main(["corpus", "--split", "book", "--out", str(corpus)]) == 0
    assert json.loads(corpus.read_text())["train_characters"] == 138_742
    with pytest.raises(SystemExit):
        main(["train", "--split", "paper", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'paper' (choose from 'd2l', 'book')" in capsys.readouterr().err
