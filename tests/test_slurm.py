"""The cluster path, run for real: the smoke study through workflow/profiles/slurm on a
one-node SLURM cluster on this machine (tests/slurm/up.sh), against a local run.

Opt-in, because it needs root and installs Debian packages (slurm-wlm, munge, slurmdbd,
mariadb-server) if they are missing; 6 to 10 minutes on 2 cores:

    BPTT_SLURM_TEST=1 pytest -m slurm

The cluster is torn down afterwards (tests/slurm/down.sh) unless BPTT_SLURM_KEEP=1.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_pipeline import workdir

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PROFILE = ["--workflow-profile", "workflow/profiles/slurm", "--configfile", "config/smoke.yaml",
           # the plugin's default (40 s before the first status check) suits a real cluster;
           # here it would only add idle time
           "--slurm-init-seconds-before-status-checks", "5"]
# the local cluster of tests/slurm/up.sh
ACCOUNT, PARTITION = "bptt", "debug"

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("BPTT_SLURM_TEST") != "1",
                       reason="opt-in: BPTT_SLURM_TEST=1 pytest -m slurm (root; starts a "
                              "local SLURM cluster)"),
]


def fresh_workdir(path):
    path.mkdir()
    return workdir(path)


def run(cmd, cwd=None, timeout=600):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    up = run(["bash", str(HERE / "up.sh")], timeout=900)
    assert up.returncode == 0, f"tests/slurm/up.sh failed:\n{up.stdout}\n{up.stderr}"
    yield
    if os.environ.get("BPTT_SLURM_KEEP") != "1":
        down = run(["bash", str(HERE / "down.sh")], timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


def set_profile_resource(wd, key, value):
    """What a user does: uncomment slurm_account / slurm_partition in the profile."""
    profile = wd / "workflow/profiles/slurm/config.yaml"
    text, n = re.subn(rf"^(\s*)# {key}: .*$", rf'\g<1>{key}: "{value}"',
                      profile.read_text(), flags=re.MULTILINE)
    assert n == 1, f"no commented {key} in {profile}"
    profile.write_text(text)


def is_timing(column):
    """Columns that measure time or speed: they differ between any two runs."""
    return "time" in column or column.endswith("_per_s")


def tables(wd):
    return {p.relative_to(wd): p for p in (wd / "results").rglob("*.csv")
            if p.parent.name == "tables"}


def sacct(job_ids):
    out = run(["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids),
               "--format=JobIDRaw,State,Account,Partition"])
    assert out.returncode == 0, out.stderr
    return {row[0]: row[1:] for row in (line.split("|") for line in out.stdout.split())}


def test_smoke_study_through_slurm_matches_a_local_run(tmp_path, cluster):
    local = fresh_workdir(tmp_path / "local")
    out = run(SNAKEMAKE + ["--cores", "2", "--configfile", "config/smoke.yaml"], cwd=local,
              timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]

    wd = fresh_workdir(tmp_path / "slurm")
    out = run(SNAKEMAKE + PROFILE, cwd=wd, timeout=1500)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    assert re.search(r"^(\d+) of \1 steps \(100%\) done$", log, re.MULTILINE), log[-3000:]

    # every job but the local ones went through sbatch, and SLURM ran each to completion
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    remote_jobs = re.findall(r"^rule \w+:$", log, re.MULTILINE)
    assert submitted and len(submitted) == len(remote_jobs)
    states = sacct(submitted)
    assert set(states) == set(submitted)
    assert {tuple(s) for s in states.values()} == {("COMPLETED", ACCOUNT, PARTITION)}, states

    # same numbers as the local run, in every table (times aside)
    expected, got = tables(local), tables(wd)
    assert set(got) == set(expected)
    assert any(p.name == "verdict.csv" for p in got)
    for rel, path in expected.items():
        a, b = pd.read_csv(path), pd.read_csv(got[rel])
        assert list(a.columns) == list(b.columns), rel
        timing = [c for c in a.columns if is_timing(c)]
        pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing),
                                      check_exact=True, obj=str(rel))
    assert [p for p in wd.rglob("report.html") if ".snakemake" not in p.parts]


@pytest.mark.parametrize("key,value,message", [
    ("slurm_account", "your_account",
     rf"The given account your_account appears to be invalid\. Available accounts:\s.*{ACCOUNT}"),
    ("slurm_partition", "your_partition", "Invalid partition name specified"),
], ids=["account", "partition"])
def test_a_wrong_account_or_partition_fails_before_any_job_runs(tmp_path, cluster, key, value,
                                                                message):
    wd = workdir(tmp_path)
    set_profile_resource(wd, key, value)
    out = run(SNAKEMAKE + PROFILE, cwd=wd, timeout=300)
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
    assert not re.findall(r"has been submitted with SLURM jobid", out.stdout + out.stderr)
    assert not list((wd / "results").rglob("*.json"))
