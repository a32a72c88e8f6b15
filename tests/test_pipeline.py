"""The Snakemake study: dry runs, lint, formatting, config validation, smoke end to end."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bptt.names import FIGURES, TABLES, VERDICT_TABLES

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def workdir(tmp_path):
    """A copy of the workflow (no results) to run in."""
    for name in ("Snakefile", "workflow", "config", "environment.yml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def snakemake(cwd, *args, timeout=600):
    return subprocess.run(SNAKEMAKE + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def job_count(output, rule):
    m = re.search(rf"^{rule}\s+(\d+)$", output, re.MULTILINE)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("args", [[], ["--configfile", "config/paper.yaml"],
                                  ["--configfile", "config/smoke.yaml"],
                                  ["--workflow-profile", "workflow/profiles/slurm"]])
def test_dry_run_plans_the_jobs(tmp_path, args):
    out = snakemake(workdir(tmp_path), "-n", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert job_count(text, "train") > 0
    assert job_count(text, "gradstats") > 0
    assert job_count(text, "report_html") == 1
    assert not (tmp_path / "results").exists()


def test_default_study_plans_the_full_grid(tmp_path):
    """The default study trains every task, tanh and GRU, ≥ 3 T and τ, every schedule, ≥ 5 seeds."""
    out = snakemake(workdir(tmp_path), "-n", "--forceall")
    assert out.returncode == 0, out.stderr[-3000:]
    # a training job writes the folders of a group of runs: read the runs from its outputs
    keys = ("task", "cell", "T", "strategy", "tau", "lr", "seed")
    jobs = [dict(zip(keys, m)) for m in re.findall(
        r"task~([^/]+)/cell~([^/]+)/T~(\d+)/strategy~([^/]+)/tau~(\d+)/lr~([^/]+)/seed~(\d+)/final\.json",
        out.stdout)]
    values = {key: {job[key] for job in jobs} for key in keys}
    assert values["task"] == {"timemachine", "recall", "influence"}
    assert {"tanh", "gru"} <= values["cell"]
    assert len(values["T"]) >= 3 and len(values["tau"] - {"0"}) >= 3
    assert {f"randomized-{s}" for s in ("constant", "minlen", "power", "artbp")} | {
        "full", "regular"} <= values["strategy"]
    assert len(values["seed"]) >= 5
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


@pytest.mark.parametrize(
    "change,key",
    [
        ({"schedules": {"uniform": {}}}, "schedules"),
        ({"taus": [0, 4]}, "taus.0"),
        ({"seeds": -2}, "seeds"),
        ({"cells": ["elman"]}, "cells.0"),
        ({"tasks": {"copy": {}}}, "tasks"),
        ({"gradstats": {"batches": 1}}, "gradstats.batches"),
    ],
)
def test_invalid_config_fails_before_any_job_naming_the_key(tmp_path, change, key):
    wd = workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/smoke.yaml").read_text())
    cfg.update(change)
    (wd / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(wd, "--configfile", "config/bad.yaml", "--cores", "1")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Invalid configuration" in text
    assert f"config key '{key}'" in text
    assert not (wd / "results").exists()


def _walk(schema, path=""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        if sub.get("type") == "object" and "properties" in sub:
            yield from _walk(sub, f"{path}{name}.")


def test_schema_documents_every_key():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    for key, sub in _walk(schema):
        assert "description" in sub or "$ref" in sub, key
        if key.count(".") == 0 or key.split(".")[0] in ("training", "gradstats", "lagprofile", "bench"):
            assert "default" in sub, f"{key} has no default"
    for key, sub in _walk(schema["definitions"]["task_settings"]):
        assert "description" in sub, key
    # every task setting has a default in task_defaults (or is a per-task grid override)
    defaults = schema["properties"]["task_defaults"]["default"]
    for key in schema["definitions"]["task_settings"]["properties"]:
        assert key in defaults or key in ("seq_lens", "taus"), key


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    wd = workdir(tmp_path)
    out = snakemake(wd, "--configfile", "config/smoke.yaml", "--cores", "2", timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    html = (wd / "report/report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    for name in FIGURES:
        assert f'id="fig-{name}"' in html
    assert 'id="verdict-table"' in html and "<table" in html
    assert "randomized truncation beat regular truncation" in html
    assert "<strong>Why.</strong>" in html and "the claim" in html
    for table in TABLES + VERDICT_TABLES:
        assert (wd / "results/tables" / f"{table}.csv").stat().st_size > 0
    for name in FIGURES:
        assert (wd / "results/figures" / f"{name}.svg").exists()
    # Snakemake's own report works too
    rep = snakemake(wd, "--configfile", "config/smoke.yaml", "--report", "report/report.zip")
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (wd / "report/report.zip").stat().st_size > 0
    # a figure reruns alone
    again = snakemake(wd, "--configfile", "config/smoke.yaml", "--cores", "1", "--forcerun",
                      "figures", "-n")
    assert again.returncode == 0
    assert job_count(again.stdout + again.stderr, "figures") == 1
    assert job_count(again.stdout + again.stderr, "train") == 0
