"""Every default has one value: the config schema, RunConfig and the command line agree."""

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from bptt.study.cli import build_parser
from bptt.study.train import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def schema_defaults(section):
    if section == "task_defaults":
        return SCHEMA["properties"]["task_defaults"]["default"]
    return {k: v["default"] for k, v in SCHEMA["properties"][section]["properties"].items()
            if "default" in v}


def command_defaults(*argv):
    return vars(build_parser().parse_args(list(argv)))


def test_run_config_defaults_are_the_schemas():
    run = asdict(RunConfig())
    shared = {**schema_defaults("task_defaults"), **schema_defaults("training")}
    compared = {k: (v, run[k]) for k, v in shared.items() if k in run}
    assert "updates" in compared and "eval_every" in compared and "split" in compared
    assert {k: pair for k, pair in compared.items() if pair[0] != pair[1]} == {}


def test_train_command_defaults_are_run_configs():
    cli = command_defaults("train", "--out", "run")
    run = asdict(RunConfig())
    compared = {k: (cli[k], v) for k, v in run.items() if k in cli}
    assert len(compared) >= 15 and "split" in compared
    assert {k: pair for k, pair in compared.items() if pair[0] != pair[1]} == {}


@pytest.mark.parametrize("argv", [["train", "--out", "run"],
                                  ["gradstats", "--estimators", "full", "--out", "g.csv"],
                                  ["corpus", "--out", "c.json"]])
def test_every_command_that_builds_the_corpus_has_the_schemas_split(argv):
    assert command_defaults(*argv)["split"] == schema_defaults("task_defaults")["split"] == "d2l"


@pytest.mark.parametrize("section,argv", [
    ("gradstats", ["gradstats", "--estimators", "full", "--out", "g.csv"]),
    ("lagprofile", ["lagprofile", "--out", "l.csv"]),
])
def test_analysis_command_defaults_are_the_schemas(section, argv):
    cli = command_defaults(*argv)
    compared = {k: (v, cli[k]) for k, v in schema_defaults(section).items()
                if k in cli and k != "estimators"}  # gradstats: families in the config, specs here
    assert compared
    assert {k: pair for k, pair in compared.items() if pair[0] != pair[1]} == {}
