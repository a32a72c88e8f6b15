"""The Snakemake study: dry runs, lint, formatting, config validation, smoke end to end."""

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import sigint_default
import yaml

from bptt.study.names import FIGURES, TABLES, VERDICT_TABLES

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def workdir(tmp_path):
    """A copy of the workflow (no results) to run in."""
    for name in ("Snakefile", "workflow", "config", "environment.yml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "profiles").symlink_to("workflow/profiles")
    return tmp_path


def snakemake(cwd, *args, timeout=600):
    return subprocess.run(SNAKEMAKE + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, umask=0o022)


def job_count(output, rule):
    m = re.search(rf"^{rule}\s+(\d+)$", output, re.MULTILINE)
    return int(m.group(1)) if m else 0


# the paper grid's full DAG (20 seeds) takes 2.5 minutes to plan: 10 seeds plan the same grid
@pytest.mark.parametrize("args", [[], ["--configfile", "config/paper.yaml", "--config", "seeds=10"],
                                  ["--configfile", "config/smoke.yaml"],
                                  ["--configfile", "config/book.yaml"],
                                  ["--workflow-profile", "workflow/profiles/slurm"]])
def test_dry_run_plans_the_jobs(tmp_path, args):
    out = snakemake(workdir(tmp_path), "-n", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert job_count(text, "train") > 0
    assert job_count(text, "gradstats") > 0
    assert job_count(text, "report_html") == 1
    assert not (tmp_path / "results").exists()


def test_default_study_plans_a_referee_grade_grid(tmp_path):
    """The default study trains every task, ≥ 2 T and ≥ 3 τ of the language model, every
    strategy at ≥ 2 schedules, ≥ 10 paired seeds and a grid of ≥ 3 learning rates."""
    out = snakemake(workdir(tmp_path), "-n", "--forceall")
    assert out.returncode == 0, out.stderr[-3000:]
    # a training job writes the folders of a group of runs: read the runs from its outputs
    keys = ("task", "cell", "T", "strategy", "tau", "lr", "seed")
    jobs = [dict(zip(keys, m)) for m in re.findall(
        r"task~([^/]+)/cell~([^/]+)/T~(\d+)/strategy~([^/]+)/tau~(\d+)/lr~([^/]+)/seed~(\d+)/final\.json",
        out.stdout)]
    values = {key: {job[key] for job in jobs} for key in keys}
    assert values["task"] == {"timemachine", "recall", "influence"}
    assert "tanh" in values["cell"]
    timemachine = [job for job in jobs if job["task"] == "timemachine"]
    assert len({job["T"] for job in timemachine}) >= 2
    assert len({job["tau"] for job in timemachine} - {"0"}) >= 3
    randomized = {s for s in values["strategy"] if s.startswith("randomized-")}
    assert len(randomized) >= 2 and {"full", "regular"} <= values["strategy"]
    assert len(values["seed"]) >= 10
    assert len(values["lr"]) >= 3  # every strategy at its own best learning rate of a grid


def test_lint_is_clean():
    out = snakemake(ROOT, "--lint")
    assert out.returncode == 0
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def test_snakefmt_formatted():
    files = ["Snakefile"] + [str(p) for p in (ROOT / "workflow/rules").glob("*.smk")]
    out = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def merged(base, change):
    """``base`` with ``change`` merged in, key by key (nested mappings too)."""
    out = dict(base)
    for k, v in change.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.mark.parametrize(
    "change,key,words",
    [
        ({"schedules": {"uniform": {}}}, "schedules", "valid keys: constant, minlen, power, artbp"),
        ({"taus": [0, 4]}, "taus.0", ""),
        ({"seeds": -2}, "seeds", ""),
        ({"seeds": 2.0}, "seeds", "not of type 'integer'"),
        ({"cells": ["elman"]}, "cells.0", ""),
        ({"tasks": {"copy": {}}}, "tasks", ""),
        ({"gradstats": {"batches": 1}}, "gradstats.batches", ""),
        # constraints between keys
        ({"schedules": {"minlen": {"min_length": 4}}}, "schedules.minlen.min_length",
         "1 <= min_length < mean"),
        ({"schedules": {"power": {"beta": 2}}}, "schedules.power", "valid keys: alpha"),
        ({"tasks": {"influence": {"positive": 30}}}, "tasks.influence.positive", "positive <= units"),
        ({"task_defaults": {"positive": 30}}, "task_defaults.positive", "positive <= units"),
        ({"tasks": {"recall": {"lags": [{"lag": 12, "seq_len": 12, "taus": [2]}]}}},
         "tasks.recall.lags", "needs seq_len > lag"),
        ({"tasks": {"recall": {"lag": 12}}}, "tasks.recall.lag", "set either tasks.recall.lags"),
        ({"tasks": {"recall": {"lags": [{"lag": 3, "seq_len": 12, "taus": [2]},
                                        {"lag": 4, "seq_len": 12, "taus": [2]}]}}},
         "tasks.recall.lags", "its own seq_len"),
        ({"tasks": {"timemachine": {"lags": [{"lag": 3, "seq_len": 12, "taus": [2]}]}}},
         "tasks.timemachine.lags", "only the recall task"),
        ({"gradstats": {"seeds": 3}}, "gradstats.seeds", "exceeds seeds"),
        ({"gradstats": {"checkpoints": ["init", 1.5]}}, "gradstats.checkpoints.1", ""),
        ({"strategies": ["full", "randomized"]}, "strategies", "must include regular"),
        ({"taus": [100]}, "taus", "no τ below T=12"),
        ({"taus": [1]}, "taus", "τ̄ >= 2"),
        ({"strategies": ["regular", "randomized"]}, "gradstats.checkpoints", "add full"),
        ({"study": "../elsewhere"}, "study", "does not match"),
        ({"tasks": {"recall": {"split": "book"}}}, "tasks.recall.split",
         "only the timemachine task has a corpus split"),
        ({"tasks": {"timemachine": {"split": "paper"}}}, "tasks.timemachine.split",
         "is not one of ['d2l', 'book']"),
    ],
)
def test_invalid_config_fails_before_any_job_naming_the_key(tmp_path, change, key, words):
    wd = workdir(tmp_path)
    cfg = merged(yaml.safe_load((wd / "config/smoke.yaml").read_text()), change)
    (wd / "config/bad.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = snakemake(wd, "--configfile", "config/bad.yaml", "-n")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Invalid configuration" in text
    assert f"config key '{key}'" in text, text[-2000:]
    assert words in text
    assert "Traceback" not in text
    assert not (wd / "results").exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    wd = workdir(tmp_path)
    lines = (wd / "config/config.yaml").read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("seeds:"))
    lines[n] = "   " + lines[n]  # bad indentation
    (wd / "config/config.yaml").write_text("\n".join(lines) + "\n")
    out = snakemake(wd, "-n")
    assert out.returncode != 0
    assert f"YAML syntax error in config/config.yaml, line {n + 1}" in out.stdout + out.stderr


def test_pairs_with_tau_at_least_T_are_listed(tmp_path):
    wd = workdir(tmp_path)
    cfg = merged(yaml.safe_load((wd / "config/smoke.yaml").read_text()), {"taus": [4, 12, 20]})
    (wd / "config/skip.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = snakemake(wd, "--configfile", "config/skip.yaml", "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pairs with τ >= T are skipped" in out.stderr
    assert "timemachine T=12 τ=12, timemachine T=12 τ=20" in out.stderr


def _walk(schema, path=""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        if sub.get("type") == "object" and "properties" in sub:
            yield from _walk(sub, f"{path}{name}.")


def planned_commands(text, command):
    """The ``python -m bptt <command>`` lines of a ``snakemake -n -p`` plan."""
    return re.findall(rf"python -m bptt {command} .*", text)


@pytest.mark.parametrize("configfile,change,split", [
    ("config/smoke.yaml", {"tasks": {"timemachine": {"split": "book"}}}, "book"),
    ("config/smoke.yaml", {}, "d2l"),
    # the cluster grid trains on the whole book (2 seeds: the same commands, a tenth of the plan)
    ("config/paper.yaml", {"seeds": 2, "gradstats": {"seeds": 2}}, "book"),
])
def test_the_timemachine_split_reaches_every_command_that_builds_the_corpus(tmp_path, configfile, change,
                                                                            split):
    wd = workdir(tmp_path)
    cfg = merged(yaml.safe_load((wd / configfile).read_text()), change)
    (wd / "config/split.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = snakemake(wd, "--configfile", "config/split.yaml", "-n", "-p")
    assert out.returncode == 0, out.stderr[-3000:]
    assert [f"--split {split} " in c for c in planned_commands(out.stdout, "corpus")] == [True]
    for command in ("train", "gradstats"):
        lm = [c for c in planned_commands(out.stdout, command) if "--task timemachine " in c]
        assert lm and all(f"--task timemachine --split {split} " in c for c in lm), command
    # the d2l anchor stays on d2l's split whatever the study's language model uses
    assert all("--split" not in c for c in planned_commands(out.stdout, "anchor"))


def test_default_study_keeps_d2ls_split():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert "split" not in cfg["tasks"]["timemachine"] and "split" not in cfg["task_defaults"]


def test_schema_documents_every_key():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    for key, sub in _walk(schema):
        assert "description" in sub or "$ref" in sub, key
        if key == "study":  # derived from the config file's name, described
            continue
        if key.count(".") == 0 or key.split(".")[0] in ("training", "gradstats", "lagprofile", "bench"):
            assert "default" in sub, f"{key} has no default"
    for key, sub in _walk(schema["definitions"]["task_settings"]):
        assert "description" in sub, key
    # every task setting has a default in task_defaults (or is a per-task grid override)
    defaults = schema["properties"]["task_defaults"]["default"]
    for key in schema["definitions"]["task_settings"]["properties"]:
        assert key in defaults or key in ("seq_lens", "taus", "lags"), key


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    wd = workdir(tmp_path)
    out = snakemake(wd, "--configfile", "config/smoke.yaml", "--cores", "2", timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    html = (wd / "report/smoke/report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    for name in FIGURES:
        assert f'id="fig-{name}"' in html
    assert 'id="verdict-table"' in html and "<table" in html
    assert "randomized truncation beat regular truncation" in html
    assert "<strong>Why.</strong>" in html and "the claim" in html
    for table in TABLES + VERDICT_TABLES:
        assert (wd / "results/smoke/tables" / f"{table}.csv").stat().st_size > 0
    for name in FIGURES:
        assert (wd / "results/smoke/figures" / f"{name}.svg").exists()
    # Snakemake's own report works too
    rep = snakemake(wd, "--configfile", "config/smoke.yaml", "--report", "report/report.zip")
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (wd / "report/report.zip").stat().st_size > 0
    # its copies of our tables and figures keep their permissions (Snakemake itself
    # stores its own report.html entry as 0600)
    with zipfile.ZipFile(wd / "report/report.zip") as z:
        ours = [i for i in z.infolist() if i.filename.endswith((".csv", ".svg"))]
        assert ours and all((i.external_attr >> 16) & 0o777 == 0o644 for i in ours)
    # a figure reruns alone
    again = snakemake(wd, "--configfile", "config/smoke.yaml", "--cores", "1", "--forcerun",
                      "figures", "-n")
    assert again.returncode == 0
    assert job_count(again.stdout + again.stderr, "figures") == 1
    assert job_count(again.stdout + again.stderr, "train") == 0


def test_the_default_workflow_profile_is_used(tmp_path):
    """rerun-incomplete and show-failed-logs hold for the README's plain command."""
    out = snakemake(workdir(tmp_path), "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Using workflow specific profile profiles/default" in out.stderr
    profile = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert profile["rerun-incomplete"] is True and profile["show-failed-logs"] is True


# -- small real studies: interruption, two studies side by side, a diverging task ----------

# the whole DAG in a few seconds per job: one task, one cell, one T, one τ, one schedule
TINY = {
    "tasks": {"recall": {"lag": 2, "alphabet": 4, "hidden": 6, "batch_size": 4, "updates": 30}},
    "cells": ["tanh"],
    "seq_lens": [6],
    "taus": [2, 3],
    "strategies": ["full", "regular", "randomized"],
    "schedules": {"constant": {}},
    "seeds": 3,
    "training": {"eval_every": 10, "eval_sequences": 4},
    "gradstats": {"checkpoints": ["init", "final"], "estimators": ["regular", "randomized"],
                  "samples": 3, "batches": 2},
    "lagprofile": {"cells": ["linear"], "radii": [0.5], "seq_len": 4, "hidden": 4, "seeds": 1},
}
TIMING = ("wall_time", "fit_time", "tokens_per_s", "wall_time_mean")


def tiny_workdir(path):
    """A workflow copy whose config/config.yaml is TINY: the README command runs it."""
    wd = workdir(path)
    (wd / "config/config.yaml").write_text(yaml.safe_dump(TINY, allow_unicode=True))
    return wd


def tables_without_timing(results):
    """Every table of a study, without the columns of measured time."""
    out = {}
    for path in sorted((results / "tables").glob("*.csv")):
        df = pd.read_csv(path)
        out[path.stem] = df.drop(columns=[c for c in TIMING if c in df.columns])
    assert set(TABLES) <= set(out)
    return out


def digest(folder):
    return {str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny study, run once without interruption by the README command."""
    wd = tiny_workdir(tmp_path_factory.mktemp("tiny"))
    out = snakemake(wd, "--cores", "2")
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return wd


@pytest.mark.slow
def test_outputs_are_readable_by_others(tiny_study):
    """Files get the umask's permissions (0644 under umask 022), not mkstemp's 0600."""
    results = tiny_study / "results/default"
    files = [tiny_study / "report/report.html", *(results / "tables").glob("*.csv"),
             *(results / "figures").glob("*.png"), *(results / "train").rglob("final.json"),
             *(results / "train").rglob("*.npz")]
    assert len(files) > 20
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def interrupt_mid_training(wd, how, total):
    """Start the README command; once more runs have finished, signal its process group."""
    train = wd / "results/default/train"
    done = len(list(train.rglob("final.json")))
    proc = subprocess.Popen(SNAKEMAKE + ["--cores", "2"], cwd=wd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, umask=0o022,
                            preexec_fn=sigint_default)
    deadline = time.time() + 300
    while len(list(train.rglob("final.json"))) <= done and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, getattr(signal, how))
    proc.wait(timeout=120)
    assert proc.returncode != 0, "the study finished before it was interrupted"
    assert len(list(train.rglob("final.json"))) < total  # mid-training


@pytest.mark.slow
def test_interrupted_study_reruns_to_the_same_tables(tiny_study, tmp_path):
    """Ctrl-C (SIGINT to the process group), then a hard kill (SIGKILL to the group) of
    the rerun, both mid-training; then the README command once more: it reruns what was
    cut short (and the lock the kill left) and ends with the uninterrupted tables."""
    wd = tiny_workdir(tmp_path)
    total = len(list((tiny_study / "results/default/train").rglob("final.json")))
    interrupt_mid_training(wd, "SIGINT", total)
    interrupt_mid_training(wd, "SIGKILL", total)
    again = snakemake(wd, "--cores", "all")
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    got = tables_without_timing(wd / "results/default")
    want = tables_without_timing(tiny_study / "results/default")
    assert got.keys() == want.keys()
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


@pytest.mark.slow
def test_a_second_study_with_a_diverging_task_leaves_the_first_alone(tiny_study):
    """Two studies side by side; a task whose runs all diverge still ends in a report."""
    wd = tiny_study
    before = digest(wd / "results/default") | digest(wd / "report")
    cfg = {**TINY, "tasks": {**TINY["tasks"], "influence": {
        "seq_lens": [20], "taus": [5], "optimizer": "sgd", "lr": 1000.0, "clip": 0.0,
        "updates": 6}}}
    (wd / "config/diverging.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = snakemake(wd, "--cores", "2", "--configfile", "config/diverging.yaml")
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    # the first study is untouched, byte for byte and in time
    assert digest(wd / "results/default") | {k: v for k, v in digest(wd / "report").items()
                                              if not k.startswith("diverging/")} == before
    runs = pd.read_csv(wd / "results/diverging/tables/runs.csv")
    influence = runs[runs.task == "influence"]
    assert len(influence) == 9 and influence["diverged"].all()
    html = (wd / "report/diverging/report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "Of its 9 runs, 9 diverged" in html

    # a run that rebuilds the tables and then fails leaves no report behind
    rules = wd / "workflow/rules/analysis.smk"
    rules.write_text(rules.read_text().replace('"python -m bptt figures --tables', '"exit 1; python -m bptt figures --tables'))
    failed = snakemake(wd, "--cores", "2", "--configfile", "config/diverging.yaml",
                       "--forcerun", "tables")
    assert failed.returncode != 0
    assert "Removed report/diverging/report.html" in failed.stderr
    assert not (wd / "report/diverging/report.html").exists()
    assert (wd / "report/report.html").exists()  # the other study keeps its report
