"""One estimator identity: the estimator names itself; training writes it; tables read it."""

import pytest

from bptt import estimators as E
from bptt.study.io import read_json, write_json
from bptt.study.tables import load_runs
from bptt.study.train import RunConfig, train

SPECS = ["full", "regular:8", "windowed:3", "randomized:constant:8", "randomized:minlen:8:min_length=3",
         "randomized:power:8:alpha=1.5", "randomized:power:4.5:alpha=2", "randomized:artbp:2.5"]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_reads_back_to_the_same_estimator(spec):
    est = E.parse_estimator(spec)
    assert E.parse_estimator(est.spec).identity() == est.identity()
    assert est.spec == spec


@pytest.mark.parametrize("spec,strategy,tau,schedule,params", [
    ("full", "full", 0, "", {}),
    ("regular:8", "regular", 8, "", {}),
    ("windowed:3", "windowed", 3, "", {}),
    ("randomized:power:8:alpha=1.5", "randomized-power", 8, "power", {"alpha": 1.5}),
    ("randomized:minlen:8", "randomized-minlen", 8, "minlen", {"min_length": 4}),
    ("randomized:artbp:2.5", "randomized-artbp", 2.5, "artbp", {}),
])
def test_identity_fields(spec, strategy, tau, schedule, params):
    ident = E.parse_estimator(spec).identity()
    assert (ident["strategy"], ident["tau"], ident["schedule"], ident["schedule_params"]) == (
        strategy, tau, schedule, params)
    assert ident["strategy"] == E.strategy_name(ident["kind"], schedule)


def test_tables_read_the_identity_training_wrote(tmp_path):
    cfg = RunConfig(task="recall", lag=3, alphabet=4, hidden=8, seq_len=10, batch_size=4,
                    estimator="randomized:power:4:alpha=1.5", updates=4, eval_every=2,
                    eval_sequences=4)
    final = train(cfg, tmp_path, quiet=True)
    assert final["spec"] == "randomized:power:4:alpha=1.5"
    assert (final["strategy"], final["tau"], final["schedule"]) == ("randomized-power", 4, "power")
    assert final["schedule_params"] == {"alpha": 1.5}
    # the tables take the identity as written: they never parse the estimator again
    stored = read_json(tmp_path / "final.json")
    stored["config"]["estimator"] = "not a spec"
    write_json(tmp_path / "final.json", stored)
    runs, _ = load_runs([tmp_path / "final.json"])
    row = runs.iloc[0]
    assert (row["strategy"], row["tau"], row["schedule"], row["kind"], row["spec"]) == (
        "randomized-power", 4, "power", "randomized", "randomized:power:4:alpha=1.5")
