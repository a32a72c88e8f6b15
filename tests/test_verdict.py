"""The verdict on synthetic runs: classes, run status and scoring, and a report whose
sentences hold for every outcome the tables can hold."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bptt.study import verdict as V
from bptt.study.io import write_csv
from bptt.study.report import render_report
from bptt.study.tables import summarize_runs

SEEDS = 10
TASKS = {  # metric, higher is better, chance, typical value
    "timemachine": ("perplexity", False, 27.0, 8.0),
    "recall": ("accuracy", True, 0.125, 0.6),
    "influence": ("loss", False, float("nan"), 5.0),
}
TESTING = dict(alpha=0.05, test="t", correction="holm", cosine_support=0.9)
SETTINGS = V.Settings(margins={"timemachine": V.Margin("relative", 0.01),
                               "recall": V.Margin("absolute", 0.02),
                               "influence": V.Margin("relative", 0.01)}, **TESTING)


def make_runs(effects, seeds=SEEDS, noise=0.002, init=None):
    """Synthetic runs and curves.

    effects: {task: {strategy: f}} with f(regular_metric, seed) -> that strategy's metric;
    regular's metric is the task's typical value times (1 + noise·N(0, 1)) per seed.
    """
    rng = np.random.default_rng(0)
    runs, curves = [], []
    for task, strategies in effects.items():
        name, higher, chance, base = TASKS[task]
        cell = "influence" if task == "influence" else "tanh"
        reg = base * (1 + noise * rng.standard_normal(seeds))
        for strategy, f in {"full": lambda r, s: r, "regular": lambda r, s: r, **strategies}.items():
            tau = 0 if strategy == "full" else 4
            for seed in range(seeds):
                metric = float(f(reg[seed], seed))
                key = dict(task=task, cell=cell, T=16, strategy=strategy, tau=tau, seed=seed)
                runs.append({**key, "schedule": strategy.removeprefix("randomized-")
                             if strategy.startswith("randomized-") else "",
                             "kind": strategy.split("-")[0], "estimator": strategy,
                             "metric_name": name, "higher_is_better": higher,
                             "chance": chance, "diverged": not np.isfinite(metric),
                             "final_val_metric": metric, "final_val_loss": 1.0,
                             "final_train_eval_loss": 0.9 if task != "influence" else 1.0,
                             "generalization_gap": 0.1 if task != "influence" else 0.0,
                             "wall_time": 1.0, "fit_time": 1.0})
                start = init if init is not None else (chance if np.isfinite(chance) else 2 * base)
                curves += [{**key, "update": 0, "val_metric": start},
                           {**key, "update": 10, "val_metric": metric}]
    return pd.DataFrame(runs), pd.DataFrame(curves)


def make_gradstats(runs, cosine=0.95, mse_ratio=2.0):
    rows = []
    for (task, cell, T), _ in runs.groupby(["task", "cell", "T"]):
        common = dict(task=task, cell=cell, seq_len=T, checkpoint="final", tau=4.0,
                      sgd_relative_variance=3e-36 if task == "influence" else 0.5,  # rounding
                      relative_variance=0.1)
        rows.append({**common, "kind": "regular", "schedule": "", "estimator": "regular(4)",
                     "strategy": "regular", "cosine_mean": cosine, "relative_mse": 0.1,
                     "relative_variance": 0.0})
        for s in ("constant", "power"):
            rows.append({**common, "kind": "randomized", "schedule": s, "estimator": f"randomized-{s}(4)",
                         "strategy": f"randomized-{s}", "cosine_mean": 0.5,
                         "relative_mse": 0.1 * mse_ratio})
    return pd.DataFrame(rows)


def verdict_of(runs, curves):
    return V.verdict_table(runs, curves, SETTINGS).set_index(["task", "schedule"])


def test_known_effects_land_in_their_class():
    runs, curves = make_runs({
        "timemachine": {"randomized-constant": lambda r, s: r * 0.95 * (1 + 0.001 * (-1) ** s),  # 5% lower
                        "randomized-power": lambda r, s: r * (1 + 0.0005 * (-1) ** s)},
        "recall": {"randomized-constant": lambda r, s: r + 0.1 + 0.01 * (s % 2),
                   "randomized-power": lambda r, s: r - 0.1 + 0.01 * (-1) ** s},
    })
    v = verdict_of(runs, curves)
    assert v.loc[("timemachine", "constant"), "outcome"] == "better"
    assert v.loc[("timemachine", "constant"), "effect"] == pytest.approx(1 / 0.95 - 1, rel=1e-3)
    assert v.loc[("timemachine", "power"), "outcome"] == "equivalent"
    assert v.loc[("recall", "constant"), "outcome"] == "better"
    assert v.loc[("recall", "constant"), "effect"] == pytest.approx(0.105, abs=1e-9)
    assert v.loc[("recall", "power"), "outcome"] == "worse"
    # one family: Holm over the four comparisons
    from bptt.study.stats import adjust
    np.testing.assert_allclose(v["p_adjusted"], adjust(v["p"].to_numpy(), "holm"))
    assert set(v["margin_scale"]) == {"relative", "absolute"}


def test_worse_than_chance_is_failed_to_learn_not_a_tie():
    """Perplexity 1e37 in both arms: flagged, scored alike, no test, not "equivalent"."""
    runs, curves = make_runs({"timemachine": {
        "randomized-constant": lambda r, s: 1e37 * (1 + s),
        "randomized-power": lambda r, s: r}})
    broken = (runs.strategy == "regular") & (runs.task == "timemachine")
    runs.loc[broken, "final_val_metric"] = 1e36 * (1 + runs.loc[broken, "seed"])
    scored = V.scored_metric(runs, curves)
    assert set(scored[scored.strategy == "regular"]["status"]) == {"failed-to-learn"}
    v = verdict_of(runs, curves)
    both = v.loc[("timemachine", "constant")]
    assert both["outcome"] == "inconclusive" and np.isnan(both["p"])
    assert "both strategies" in both["note"]
    assert both["regular_failed"] == SEEDS and both["randomized_failed"] == SEEDS
    # regular failed, randomized learned: randomized is better, not tied
    assert v.loc[("timemachine", "power"), "outcome"] == "better"


def test_equal_at_chance_is_inconclusive_not_equivalent():
    """Both strategies hover at chance (some seeds a hair above): not evidence of anything."""
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: 0.125 + 0.002 * (-1) ** s,
                                         "randomized-power": lambda r, s: r}})
    at_chance = runs.task == "recall"
    runs.loc[at_chance, "final_val_metric"] = 0.125 + 0.003 * (-1) ** runs.loc[at_chance, "seed"]
    constant = at_chance & (runs.strategy == "randomized-constant")
    runs.loc[constant, "final_val_metric"] = 0.126 + 0.002 * (runs.loc[constant, "seed"] % 3)
    runs.loc[at_chance & (runs.strategy == "randomized-power"), "final_val_metric"] = 0.6
    v = verdict_of(runs, curves)
    row = v.loc[("recall", "constant")]
    assert bool(row["neither_learned"]) and row["outcome"] == "inconclusive"
    assert "neither strategy learned" in row["note"]
    # one strategy learned: the comparison stands
    assert not bool(v.loc[("recall", "power"), "neither_learned"])
    assert v.loc[("recall", "power"), "outcome"] == "better"


def test_a_task_without_chance_level_fails_to_learn_against_its_start():
    runs, curves = make_runs({"influence": {"randomized-constant": lambda r, s: 50.0 + s,  # start: 10
                                            "randomized-power": lambda r, s: r}})
    scored = V.scored_metric(runs, curves)
    status = scored.groupby("strategy")["status"].agg(set)
    assert status["randomized-constant"] == {"failed-to-learn"}
    assert status["regular"] == {"ok"}
    v = verdict_of(runs, curves)
    assert v.loc[("influence", "constant"), "outcome"] == "worse"


def test_diverged_runs_are_scored_as_the_worst_and_counted():
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: np.nan if s < 3 else r,
                                         "randomized-power": lambda r, s: r}})
    scored = V.scored_metric(runs, curves)
    bad = scored[(scored.strategy == "randomized-constant") & (scored.seed < 3)]
    assert set(bad["status"]) == {"diverged"}
    # the worst of the trained runs, the start and chance: chance (0.125) for accuracy
    assert np.allclose(bad["score"], 0.125)
    v = verdict_of(runs, curves)
    assert v.loc[("recall", "constant"), "randomized_diverged"] == 3
    status = V.status_table(runs, curves).set_index(["task", "strategy"])
    assert status.loc[("recall", "randomized-constant"), "diverged"] == 3
    assert status.loc[("recall", "randomized-constant"), "ok"] == SEEDS - 3


def test_settings_are_checked_with_the_key_named():
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: r}})
    with pytest.raises(ValueError, match="verdict.margins.recall"):
        V.verdict_table(runs, curves, V.Settings(margins={}, **TESTING))
    with pytest.raises(ValueError, match="positive metric"):
        V._effects(np.array([0.0]), np.array([1.0]), True, V.Margin("relative", 0.01))
    with pytest.raises(ValueError, match="select one run per grid point"):
        V.verdict_table(pd.concat([runs, runs]), curves, SETTINGS)
    with pytest.raises(ValueError, match="task=scale:value"):
        V.parse_margin("recall:0.02")
    with pytest.raises(ValueError, match="valid: relative, absolute"):
        V.parse_margin("recall=percent:2")
    assert V.parse_margin("timemachine=relative:0.01") == ("timemachine", V.Margin("relative", 0.01))
    with pytest.raises(ValueError, match="valid: holm, bh"):
        V.Settings(margins={}, **{**TESTING, "correction": "bonferroni"})


SCENARIOS = {  # randomized's metric from regular's (lower is better, except recall's r < 1)
    "all better": lambda r, s: r * (0.9 if r > 1 else 1.2) * (1 + 0.001 * (-1) ** s),
    "all worse": lambda r, s: r * (1.1 if r > 1 else 0.8) * (1 + 0.001 * (-1) ** s),
    "all equivalent": lambda r, s: r * (1 + 0.0005 * (-1) ** s),
    "inconclusive": lambda r, s: r * (1 + 0.2 * (-1) ** s),
    "randomized never learns": lambda r, s: 1e37 if r > 1 else 0.0,
    # at its start: chance (timemachine 27, recall 0.125), influence's 2·typical; see with_audit(stuck=)
    "randomized stuck at its start": lambda r, s: 0.125 if r < 1 else (27.0 if r > 6 else 10.0),
}


def _render(tmp_path, runs, curves, gradstats):
    tables = tmp_path / "tables"
    v = V.verdict_table(runs, curves, SETTINGS)
    reasons = V.reasons_table(runs, gradstats, SETTINGS.cosine_support)
    for name, df in {"runs": runs, "verdict": v, "verdict_counts": V.counts_table(v),
                     "reasons": reasons, "summary": summarize_runs(runs), "gradstats": gradstats,
                     "findings": V.findings_table(v, reasons, runs, curves, SETTINGS),
                     "run_status": V.status_table(runs, curves)}.items():
        write_csv(tables / f"{name}.csv", df)
    figs, caps = tmp_path / "figures", tmp_path / "captions"
    caps.mkdir()
    (caps / "final_metric.rst").write_text("A caption.")
    figs.mkdir()
    (figs / "final_metric.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "config.yaml").write_text("schedules:\n  power: {alpha: 2.5}\n  constant: {}\n")
    render_report(tables, [figs / "final_metric.png"], caps, tmp_path / "config.yaml",
                  tmp_path / "out" / "report.html")
    html = (tmp_path / "out" / "report.html").read_text()
    prose = re.sub(r"<table.*?</table>", "", html, flags=re.S)
    return v, prose


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_report_sentence_holds_for_the_outcome(tmp_path, monkeypatch, scenario):
    f = SCENARIOS[scenario]
    runs, curves = make_runs({task: {"randomized-constant": f, "randomized-power": f}
                              for task in TASKS})
    stuck = [(task, s) for task in TASKS for s in ("randomized-constant", "randomized-power")]
    runs = with_audit(runs, stuck=stuck if scenario == "randomized stuck at its start" else ())
    audit = audit_tables(runs, None, SETTINGS.margin, curves)
    for name, df in audit.items():
        write_csv(tmp_path / "tables" / f"{name}.csv", df)
    monkeypatch.chdir(tmp_path)  # the packaged template does not depend on the working directory
    v, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = re.sub(r"<[^>]+>", " ", prose)
    flat = re.sub(r"\s+", " ", text)
    # the convergence headline counts learning apart from stopping, with the verdict's status
    conv, status = audit["convergence"], V.status_table(runs, curves)
    learned, stopped = map(int, re.search(r"(\d+) converged after learning, (\d+) stopped without learning",
                                          flat).groups())
    assert (learned, stopped) == (conv["converged_learned"].sum(), conv["stopped_without_learning"].sum())
    assert conv["failed_to_learn"].sum() == status["failed_to_learn"].sum()
    assert stopped == (status["failed_to_learn"].sum() + conv["near_chance"].sum()
                       + (conv["never_improved"].sum() if scenario != "randomized stuck at its start" else 0))
    if scenario in ("randomized never learns", "randomized stuck at its start"):
        assert stopped == 6 * SEEDS and f"In all, {6 * SEEDS} runs did not learn" in flat
    else:
        assert stopped == 0 and "did not learn" not in flat
    if scenario == "randomized stuck at its start":
        assert (f"{4 * SEEDS} runs blew up (influence randomized-constant {SEEDS}, influence randomized-power "
                f"{SEEDS}, timemachine randomized-constant {SEEDS}, timemachine randomized-power {SEEDS})") in flat
        assert f"{6 * SEEDS} of the {6 * SEEDS} never improved at all" in flat
        # the θ section: randomized's θ is its start; its loss grew, and no wrong-sign gradient is named
        assert flat.count(f"best checkpoint is the initialization in {SEEDS} of {SEEDS} seeds") == 2
        assert "by the end its loss had grown to 1e4 (from 10 at initialization): θ moved away from θ*" in flat
        assert "wrong-sign gradient away" not in flat and "wrong-sign gradient leads" not in flat
    else:
        assert "blew up" not in flat and "best checkpoint is the initialization in" not in flat
    assert not re.search(r"\b(nan|inf|None)\b", text), re.findall(r".{60}\b(?:nan|inf|None)\b.{20}", text)
    assert "α = 2.5" in text and "α = 1.5" not in text  # the schedule's parameter from the config
    # an effect is a signed change, or past a factor of 2 a factor with its direction
    effect = r"effect ([+-][\d.e+-]+|[\d.]+× (?:lower|higher) \w+)"
    gains = re.findall(r"Largest significant gain for randomized: .*?" + effect, text)
    if (v["outcome"] == "better").any():
        assert gains and all(_favours_randomized(g) for g in gains)
    else:
        assert not gains
    losses = re.findall(r"Largest significant loss: .*?" + effect, text)
    assert not any(_favours_randomized(x) for x in losses)
    # the headline judges each task on its own, by its own counts
    for task, g in v.groupby("task"):
        better, decided = (g["outcome"] == "better").sum(), g["outcome"].isin(["equivalent", "worse"]).sum()
        verdict = re.search(rf"\b{task}:\s+(.*?)[:.]", text, re.S).group(1).strip()
        expected = ("not decided" if better == decided == 0 else "the claim holds where the data decide"
                    if better == 0 else "the claim fails where the data decide" if decided == 0 else "mixed")
        assert verdict == expected, (task, verdict)
    # influence has no minibatch noise and no held-out data: said so, not a number
    assert "not applicable (this task has no minibatch noise)" in text
    assert "Reason 3 (truncation regularizes) is not applicable" in text
    if scenario == "randomized never learns":
        assert "failed to learn" in text and (v["outcome"] == "worse").all()


def _favours_randomized(effect):
    """A rendered effect (+1.2%, +0.3 accuracy, 71× lower loss) is in randomized's favour."""
    if "×" in effect:
        return ("lower" in effect) != ("accuracy" in effect)
    return float(effect) > 0


def test_large_relative_effects_read_as_factors(tmp_path, monkeypatch):
    """A relative effect of +7,000% is 71× lower loss; -99% is 100× higher (not -99%)."""
    f = lambda r, s: (r / 71 if r > 1 else r) * (1 + 0.001 * (-1) ** s)  # noqa: E731
    runs, curves = make_runs({task: {"randomized-constant": f, "randomized-power": f} for task in TASKS})
    monkeypatch.chdir(tmp_path)
    _, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = re.sub(r"<[^>]+>", " ", prose)
    assert re.search(r"effect 7[01](\.\d)?× lower \w+ \[7[01](\.\d)?×, 7[01](\.\d)?×\]", text), text[:3000]
    assert "e+03%" not in text


def test_report_module_does_not_import_matplotlib():
    code = "import sys, bptt.study.report; assert 'matplotlib' not in sys.modules, 'imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_task_whose_runs_all_diverge_still_gets_a_verdict_and_a_report(tmp_path):
    runs, curves = make_runs({task: {"randomized-constant": lambda r, s: r * (1 + 0.01 * (-1) ** s)}
                              for task in TASKS})
    dead = runs.task == "influence"
    runs.loc[dead, "final_val_metric"] = np.nan
    runs.loc[dead, "diverged"] = True
    v, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    row = v.set_index("task").loc["influence"]
    assert row["outcome"] == "inconclusive" and "both strategies" in row["note"]
    text = re.sub(r"<[^>]+>", " ", prose)
    assert "No point estimate favours randomized truncation" in text
    assert "not computable" in text
    assert not re.search(r"\b(nan|inf|None)\b", text)


def test_the_test_split_is_judged_when_runs_have_it():
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: r + 0.1 + 0.01 * (s % 2)}})
    runs["test_metric"] = runs["final_val_metric"] - 0.05  # best checkpoint, scored on test
    v = V.verdict_table(runs, curves, SETTINGS)
    assert v["regular_mean"].iloc[0] == pytest.approx(runs[runs.strategy == "regular"]["test_metric"].mean())
    reasons = V.reasons_table(runs, make_gradstats(runs), 0.9)
    assert V.findings_table(v, reasons, runs, curves, SETTINGS)["split"].iloc[0] == "test"


def test_one_seed_gives_a_verdict_without_tests(tmp_path):
    runs, curves = make_runs({"timemachine": {"randomized-constant": lambda r, s: r * 0.9}}, seeds=1)
    v, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    assert (v["outcome"] == "inconclusive").all() and (v["note"] == "no test: one seed").all()
    text = re.sub(r"<[^>]+>", " ", prose)
    assert "one seed allows no test" in text
    assert not re.search(r"\b(nan|inf|None)\b", text)


def test_the_learning_rate_sentence_follows_the_tuning_table(tmp_path):
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: r}})
    choices = pd.DataFrame({"task": "recall", "cell": "tanh", "T": 16, "strategy": ["regular"] * 3,
                            "tau": 4, "lr": [0.005, 0.01, 0.02], "seeds": SEEDS,
                            "val_metric_mean": [0.5, 0.6, 0.7], "chosen": [False, False, True],
                            "at_grid_edge": [False, False, True]})
    write_csv(tmp_path / "tables" / "lr_choices.csv", choices)
    _, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", prose))
    assert "best of 3 rates" in text and "for 1 of 1 grid points the best rate lies at an edge" in text
    assert "One optimizer setting per task" not in text


# --- the training audit (bptt.study.audit): anchor, convergence, clipping, costs, θ, learning rates ---

from bptt.study.audit import audit_tables, costs_summary  # noqa: E402


def with_audit(runs, unconverged=(), clip=1.0, clip_fraction=0.0, cuts=None, theta_offset=0.0,
               stuck=(), near=()):
    """``runs`` with the columns training records for the audit.

    unconverged: (task, strategy, seed) triples that did not converge; cuts: {strategy
    prefix: mean cuts per update} (regular's default 3); theta: θ* + offset for influence.
    stuck: (task, strategy) pairs whose best checkpoint is the initialization in every
    seed (judged at their start: chance for recall, make_runs' 2·typical otherwise),
    stopped by patience; a lower-is-better one ends 1000× above its start (blew up), and
    influence's θ stays at 0.5.  near: (task, strategy) pairs that end 0.005 above chance
    (within recall's margin of 0.02) after improving.
    """
    runs = runs.copy()
    key = list(zip(runs.task, runs.strategy, runs.seed))
    runs["converged"] = [k not in set(unconverged) for k in key]
    runs["stop_reason"] = np.where(runs["converged"], "patience", "budget")
    runs["updates_done"], runs["late_improvement"], runs["best_update"] = 100, 0.05, 100
    runs["test_metric"] = runs["best_val_metric"] = runs["final_val_metric"]
    pair = pd.Series(list(zip(runs.task, runs.strategy)), index=runs.index)
    for task, strategy in stuck:
        at = (pair == (task, strategy)).to_numpy()
        _, higher, chance, base = TASKS[task]
        start = chance if np.isfinite(chance) else 2 * base
        runs.loc[at, ["test_metric", "best_val_metric", "best_update"]] = start, start, 0
        runs.loc[at, "final_val_metric"] = start if higher else 1000 * start
    for task, strategy in near:
        at = (pair == (task, strategy)).to_numpy()
        runs.loc[at, ["test_metric", "best_val_metric", "final_val_metric"]] = TASKS[task][2] + 0.005
    runs["clip"] = np.where(runs.task == "influence", 0.0, clip)
    randomized = runs.strategy.str.startswith("randomized")
    runs["clip_fraction"] = np.where(randomized & (runs.task != "influence"), clip_fraction, 0.0)
    cuts = {"regular": 3.0, "randomized": 3.0, **(cuts or {})}
    runs["mean_cuts"] = [next((v for p, v in sorted(cuts.items(), key=lambda kv: -len(kv[0]))
                               if s.startswith(p)), 0.0) for s in runs.strategy]
    runs["mean_peak_stored_steps"] = runs["max_peak_stored_steps"] = 8.0 * (1 + runs["mean_cuts"] / 3)
    runs["mean_backward_steps"] = 15.0 - runs["mean_cuts"]
    inf = runs.task == "influence"
    runs["theta_star"] = np.where(inf, 0.5, np.nan)
    runs["theta"] = np.where(inf, 0.5 + theta_offset, np.nan)
    for task, strategy in stuck:
        if task == "influence":
            at = (pair == (task, strategy)).to_numpy()
            runs.loc[at, "theta"], runs.loc[at, "theta_star"] = 0.5, -0.05
    return runs


def lr_choices(runs, rates=(0.005, 0.01, 0.02), pick=2):
    rows = []
    for k, _ in runs.groupby(["task", "cell", "T", "strategy", "tau"]):
        for i, lr in enumerate(rates):
            rows.append(dict(zip(["task", "cell", "T", "strategy", "tau"], k), lr=lr, seeds=SEEDS,
                             val_metric_mean=1.0, chosen=i == pick,
                             at_grid_edge=i == pick and i in (0, len(rates) - 1)))
    return pd.DataFrame(rows)


def test_the_audit_tables_count_what_training_recorded():
    runs, _ = make_runs({task: {"randomized-constant": lambda r, s: r, "randomized-power": lambda r, s: r}
                         for task in TASKS})
    runs = with_audit(runs, unconverged=[("recall", "regular", 0), ("recall", "randomized-power", 1)],
                      clip_fraction=0.95, cuts={"randomized-power": 6.0}, theta_offset=0.01)
    t = audit_tables(runs, lr_choices(runs))
    conv = t["convergence"].set_index(["task", "strategy"])
    assert conv.loc[("recall", "regular"), "unconverged"] == 1
    assert conv.loc[("recall", "regular"), "share_converged"] == pytest.approx((SEEDS - 1) / SEEDS)
    assert conv.loc[("timemachine", "full"), "share_converged"] == 1.0
    assert len(t["unconverged"]) == 2
    clip = t["clipping"].set_index(["task", "strategy"])
    assert clip.loc[("recall", "randomized-constant"), "clip_fraction_mean"] == pytest.approx(0.95)
    assert clip.loc[("influence", "randomized-constant"), "runs_clipped"] == 0
    costs = t["costs"].set_index(["task", "strategy"])
    assert "full" not in set(t["costs"]["strategy"])  # only the strategies the verdict pairs
    assert costs.loc[("timemachine", "randomized-power"), "cuts_ratio"] == pytest.approx(2.0)
    assert not costs.loc[("timemachine", "randomized-power"), "cuts_matched"]
    assert costs.loc[("timemachine", "randomized-constant"), "cuts_matched"]
    summary = {s["task"]: s for s in costs_summary(t["costs"])}
    assert summary["recall"]["cuts_matched"] == 1 and summary["recall"]["cuts_measured"] == 2
    assert summary["recall"]["cuts_max_strategy"] == "randomized-power"
    theta = t["influence_theta"].set_index("strategy")
    assert (theta["runs_above"] == SEEDS).all() and (theta["runs_below"] == 0).all()
    assert (theta["runs_at"] == 0).all()
    # θ within 0.1% of |θ*| has reached it, whichever way it rounded
    at = audit_tables(runs.assign(theta=runs["theta_star"] * (1 + 1e-5)), lr_choices(runs))
    assert (at["influence_theta"]["runs_at"] == SEEDS).all()
    assert (at["influence_theta"][["runs_above", "runs_below"]] == 0).all().all()
    assert theta["theta_minus_star_mean"].to_numpy() == pytest.approx(0.01)
    edges = t["lr_edges"]
    assert (edges["at_high_edge"] == edges["grid_points"]).all() and (edges["inside"] == 0).all()
    inside = audit_tables(runs, lr_choices(runs, pick=1))["lr_edges"]
    assert (inside["inside"] == inside["grid_points"]).all()
    two = audit_tables(runs, lr_choices(runs, rates=(0.01, 0.02), pick=0))["lr_edges"]
    assert (two["at_low_edge"] == two["grid_points"]).all() and (two["inside"] == 0).all()


def test_comparisons_with_an_unconverged_run_are_marked():
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: r + 0.1 + 0.01 * (s % 2),
                                         "randomized-power": lambda r, s: r}})
    runs = with_audit(runs, unconverged=[("recall", "randomized-constant", 3)])
    v = verdict_of(runs, curves)
    assert v.loc[("recall", "constant"), "randomized_unconverged"] == 1
    assert v.loc[("recall", "power"), ["regular_unconverged", "randomized_unconverged"]].sum() == 0
    reasons = V.reasons_table(runs, make_gradstats(runs), 0.9)
    f = V.findings_table(v.reset_index(), reasons, runs, curves, SETTINGS).iloc[0]
    assert (f["comparisons_unconverged"], f["comparisons_unconverged_decided"], f["runs_unconverged"]) == (1, 1, 1)
    assert f["best_unconverged"] == 1 and f["worst_unconverged"] == 0  # the gain rests on it


def test_the_report_marks_a_gain_that_rests_on_an_unconverged_run(tmp_path):
    runs, curves = make_runs({"recall": {"randomized-constant": lambda r, s: r + 0.1 + 0.01 * (s % 2)}})
    runs = with_audit(runs, unconverged=[("recall", "regular", 2), ("recall", "regular", 5)])
    _, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", prose))
    assert re.search(r"Largest significant gain for randomized: .*? \(involves 2 runs that did not converge\)", text)
    assert "1 of its 1 comparisons involve a run that did not converge (1 of them classed other" in text


def _anchor_table(val=7.5, updates=1000, diverged=False):
    return pd.DataFrame([{"val_perplexity": np.nan if diverged else val, "d2l_val_perplexity": 7.2,
                          "val_perplexity_every_offset": val, "train_perplexity": val - 1,
                          "d2l_train_perplexity": 6.2, "test_perplexity": val + 0.1, "epochs": 100.0,
                          "updates": updates, "best_update": updates, "clip_fraction": 0.4,
                          "converged": True, "diverged": diverged, "wall_time": 1.0,
                          "tokens_per_s": 1.0, "source": "d2l"}])


AUDITS = {  # name: (with_audit kwargs, lr grid kwargs, anchor table or None)
    "clean": (dict(), dict(pick=1), _anchor_table()),
    "referee's worries": (dict(unconverged=[("recall", "regular", 0), ("timemachine", "full", 1)],
                               clip_fraction=0.95, cuts={"randomized-power": 6.0}, theta_offset=-0.2),
                          dict(pick=2), _anchor_table(val=9.0, updates=10)),
    "two rates, diverged anchor": (dict(clip_fraction=0.1), dict(rates=(0.01, 0.02), pick=0),
                                   _anchor_table(diverged=True)),
    "no records": (None, None, None),
    "never improved, blew up, at chance": (dict(stuck=[("influence", "regular"), ("recall", "randomized-power")],
                                                near=[("recall", "randomized-constant")]),
                                           dict(pick=1), _anchor_table()),
}


@pytest.mark.parametrize("audit", list(AUDITS))
def test_every_audit_sentence_holds(tmp_path, audit):
    kwargs, grid, anchor = AUDITS[audit]
    f = SCENARIOS["all equivalent"]
    runs, curves = make_runs({task: {"randomized-constant": f, "randomized-power": f} for task in TASKS})
    if kwargs is not None:
        runs = with_audit(runs, **kwargs)
    tables = tmp_path / "tables"
    if grid is not None:
        write_csv(tables / "lr_choices.csv", lr_choices(runs, **grid))
        # margins (near chance; the lr edges' steepness) only where the case needs them
        margin = SETTINGS.margin if "at chance" in audit else None
        audit_t = audit_tables(runs, lr_choices(runs, **grid), margin, curves)
        for name, df in audit_t.items():
            write_csv(tables / f"{name}.csv", df)
    if anchor is not None:
        write_csv(tables / "anchor.csv", anchor)
    v, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", prose))
    assert not re.search(r"\b(nan|inf|None)\b", text), re.findall(r".{60}\b(?:nan|inf|None)\b.{20}", text)
    assert not re.search(r"\.[A-Z]", text)  # sentences joined without a space
    if grid is not None:
        # the headline partitions the runs: learned, stopped without learning, unconverged
        conv = audit_t["convergence"]
        head = re.search(r"Of the (\d+) runs that enter the verdict \(each grid point at its chosen "
                         r"learning rate\), (\d+) converged after learning, (\d+) stopped without "
                         r"learning and (\d+) did not converge\.", text)
        n, learned, stopped, unconverged = map(int, head.groups())
        assert (n, learned + stopped + unconverged) == (len(runs), len(runs))
        assert (learned, stopped) == (conv["converged_learned"].sum(), conv["stopped_without_learning"].sum())
        # the verdict's own status: the runs the audit calls failed are those it scores failed
        status = V.status_table(runs, curves).set_index(["task", "strategy"])
        assert (conv.set_index(["task", "strategy"])["failed_to_learn"] == status["failed_to_learn"]).all()
        assert ("did not learn" in text) == bool(conv["not_learned"].sum())
        assert ("blew up" in text) == bool(conv["blew_up"].sum())
    assert "d2l reports a validation perplexity of ≈ 7.2 and a training perplexity of ≈ 6.2" in text
    if audit == "clean":
        assert "validation perplexity 7.5 (d2l ≈ 7.2)" in text and "within 10% of it" in text
        assert "Every run stopped improving within its budget" in text
        assert "involve a run that did not converge" not in text
        assert f"{len(runs)} converged after learning, 0 stopped without learning" in text
        assert "best checkpoint is the initialization in" not in text
        assert "clipping never fired on randomized truncation" in text and "is biased" not in text
        assert "Here τ̄ = τ matched the realised costs" in text and "not at matched" not in text
        assert "0 chose the lowest rate" in text and "Every chosen rate is bracketed" in text
        assert "10 of 10 runs at θ* (within 0.1%), 0 above, 0 below" in text
    if audit == "referee's worries":
        assert "more than 10% of it, after 10 of d2l's 1000 updates" in text
        assert "stopped without learning and 2 did not converge" in text
        assert "regular 9 of 10 converged after learning, 1 did not converge" in text
        assert "2 of its 2 comparisons involve a run that did not converge" in text  # recall
        assert "fired on 95% of randomized truncation's updates" in text and "is biased" in text
        assert "cuts matched in 1 of 2" in text and "not at matched realised cost" in text
        assert "randomized-power at T = 16, τ = 4 (6 against 3)" in text
        assert "0 of 10 runs above θ*, 10 below" in text
        assert "may be undertuned" in text
    if audit == "two rates, diverged anchor":
        assert "The anchor run diverged" in text
        assert "no choice is bracketed" in text
    if audit == "never improved, blew up, at chance":
        conv = audit_t["convergence"].set_index(["task", "strategy"])
        reg = conv.loc[("influence", "regular")]
        assert (reg["converged"], reg["converged_learned"], reg["stopped_without_learning"]) == (SEEDS, 0, SEEDS)
        assert (reg["failed_to_learn"], reg["never_improved"], reg["blew_up"], reg["blew_up_from_init"]) == \
            (SEEDS, SEEDS, SEEDS, SEEDS)
        power, constant = conv.loc[("recall", "randomized-power")], conv.loc[("recall", "randomized-constant")]
        assert (power["failed_to_learn"], power["never_improved"], power["blew_up"]) == (SEEDS, SEEDS, 0)
        assert (constant["failed_to_learn"], constant["near_chance"], constant["never_improved"]) == (0, SEEDS, 0)
        assert constant["stopped_without_learning"] == SEEDS and constant["converged"] == SEEDS
        assert (conv.drop(index=[("influence", "regular"), ("recall", "randomized-power"),
                                 ("recall", "randomized-constant")])["not_learned"] == 0).all()
        n = len(runs)
        assert f"{n - 3 * SEEDS} converged after learning, {3 * SEEDS} stopped without learning and 0 did not" in text
        assert (f"In all, {3 * SEEDS} runs did not learn: {2 * SEEDS} are not better than chance" in text
                and f"{SEEDS} other runs beat chance (or their start) by no more than" in text)
        assert f"{2 * SEEDS} of the {3 * SEEDS} never improved at all" in text
        assert f"{SEEDS} runs blew up (influence regular {SEEDS})" in text
        assert (f"regular 0 of {SEEDS} converged after learning, {SEEDS} stopped without learning "
                f"({SEEDS} scored failed to learn); {SEEDS} never improved on their initialization; "
                f"{SEEDS} blew up ({SEEDS} from their initialization") in text
        assert "the way truncation's wrong-sign gradient leads on this task" in text
        # the θ section: regular's θ is its initialization, and its loss grew from there
        theta = audit_t["influence_theta"].set_index("strategy")
        assert theta.loc["regular", "best_at_init"] == SEEDS and theta.loc["full", "best_at_init"] == 0
        assert (f"regular (τ = 4): best checkpoint is the initialization in {SEEDS} of {SEEDS} seeds "
                "(θ = 0.5, against θ* = -0.05); by the end its loss had grown to 1e4 (from 10 at "
                "initialization): it followed the wrong-sign gradient away from θ*") in text
        assert text.count("best checkpoint is the initialization in") == 1
        # the verdict is unchanged: it scores what it scored before
        assert (v.set_index(["task", "schedule"]).loc[("influence", "constant"), "regular_failed"] == SEEDS)
    if audit == "no records":
        assert "The anchor was not run" in text and "No convergence record" in text
        assert "No clipping record" in text and "No realised-cost record" in text
        assert "No influence runs" in text and "No learning-rate grid" in text


def test_reason_3_is_one_measurement_in_the_summary_and_along_training():
    """The verdict's reason 3 reads the same held-out gap as the along-training section, and
    says 'not applicable' where that section does (recall: fresh samples every batch)."""
    from bptt.study.reasons import regularization

    runs, curves = make_runs({"timemachine": {"randomized-constant": lambda r, s: r},
                              "recall": {"randomized-constant": lambda r, s: r}})
    runs.loc[(runs.task == "timemachine") & (runs.strategy == "regular"), "generalization_gap"] = 0.05
    gradstats = make_gradstats(runs)
    r3 = V.reasons_table(runs, gradstats, 0.9).query("reason == 3").set_index("task")
    along = regularization(runs).set_index("task")
    assert r3.loc["timemachine", "value"] == pytest.approx(along.loc["timemachine", "gap_regular_minus_full"])
    assert bool(r3.loc["timemachine", "applicable"]) and bool(r3.loc["timemachine", "supported"])
    assert not bool(r3.loc["recall", "applicable"]) and "fresh sample" in r3.loc["recall", "note"]


def test_reason_2_is_also_judged_on_the_mean_of_a_window_of_updates():
    """One update: randomized's variance makes its MSE twice regular's (reason 2 holds);
    averaged over W = 10 updates its variance shrinks and regular's bias stays, so its
    MSE is half regular's and reason 2 over the window fails — both are counted."""
    runs, curves = make_runs({"timemachine": {"randomized-constant": lambda r, s: r * (1 + 0.0005 * (-1) ** s)}})
    gs = make_gradstats(runs)
    gs["window"] = 10
    gs["relative_mse_window"] = np.where(gs["kind"] == "regular", 0.1, 0.05)
    reasons = V.reasons_table(runs, gs, 0.9)
    r2 = reasons[(reasons["reason"] == 2) & (reasons["schedule"] == "constant")].iloc[0]
    assert bool(r2["supported"]) and not bool(r2["supported_window"])
    assert r2["value"] == pytest.approx(2.0) and r2["value_window"] == pytest.approx(0.5)
    v = V.verdict_table(runs, curves, SETTINGS)
    f = V.findings_table(v, reasons, runs, curves, SETTINGS).set_index("task").loc["timemachine"]
    assert (f["reason2_rest"], f["reason2_rest_of"]) == (1, 1)
    assert (f["reason2w_rest"], f["reason2w_rest_of"]) == (0, 1)
    assert f["reason2_window"] == 10


def test_an_edge_choice_counts_as_steep_only_beyond_the_margin():
    """Chosen at the high edge: 1.5% better than the next rate is steep (the best rate may
    lie beyond the grid) for a 1% margin, 0.5% better is flat."""
    from bptt.study.audit import lr_edges_table

    rows = []
    for strategy, top in (("regular", 0.985), ("randomized-constant", 0.995)):
        for lr, metric in ((0.01, 1.2), (0.02, 1.0), (0.04, top)):
            rows.append({"task": "timemachine", "cell": "tanh", "T": 32, "strategy": strategy, "tau": 4,
                         "lr": lr, "seeds": 3, "val_metric_mean": metric, "chosen": lr == 0.04})
    t = lr_edges_table(pd.DataFrame(rows), SETTINGS.margin).set_index("strategy")
    assert t.loc["regular", "at_high_edge"] == 1 and t.loc["regular", "edge_steep"] == 1
    assert t.loc["randomized-constant", "at_high_edge"] == 1 and t.loc["randomized-constant", "edge_steep"] == 0
    assert lr_edges_table(pd.DataFrame(rows))["edge_steep"].isna().all()  # no margins: not judged


@pytest.mark.parametrize("split,sizes,words", [
    ("d2l", (10_032, 5_032, 5_032), "trained on 10,032 characters (d2l's split: the first 20,096 characters"),
    ("book", (138_742, 17_343, 17_343), "trained on 138,742 characters (the whole book, split 80/10/10)"),
])
def test_report_states_the_language_models_training_block(tmp_path, monkeypatch, split, sizes, words):
    """The report says which split the language model used, with sizes from the runs table."""
    runs, curves = make_runs({task: {"randomized-constant": lambda r, s: r} for task in TASKS})
    lm = runs["task"] == "timemachine"
    runs["split"] = np.where(lm, split, None)
    for name, n in zip(("train_characters", "val_characters", "test_characters"), sizes):
        runs[name] = np.where(lm, n, np.nan)
    monkeypatch.chdir(tmp_path)
    _, prose = _render(tmp_path, runs, curves, make_gradstats(runs))
    text = " ".join(re.sub(r"<[^>]+>", " ", prose).split())
    assert words in text
    assert f"validated on the next {sizes[1]:,} and tested on the {sizes[2]:,} after them" in text
    assert ("regularization-dominated regime" in text) == (split == "d2l")
    assert ("trained on 10,032 characters (d2l's split, section 2)" in text) == (split == "d2l")
    assert ("not the split of this study's language-model runs" in text) == (split != "d2l")
    assert not re.search(r"\b(nan|None)\b", text)
