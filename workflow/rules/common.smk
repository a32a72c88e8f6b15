import itertools
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bptt.study.data import TASKS, make_task
from bptt.engine.estimators import format_spec, parse_estimator, strategy_name
from bptt.study.names import (
    BENCH_FIGURE,
    FIGURES,
    REASONS_TABLES,
    TABLES,
    VERDICT_TABLES,
)
from bptt.study.templates import REPORT as REPORT_TEMPLATE

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def _is_int(checker, value):
    """JSON schema integers, without 2.0 (range(2.0) fails mid-run)."""
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", _is_int
    ),
)


def _invalid(*lines):
    raise WorkflowError("Invalid configuration:\n" + "\n".join(lines))


def _key_error(key, message):
    _invalid(f"  config key '{key}': {message}")


def _check_config(cfg):
    """Validate with a message that names the offending key, then fill the defaults."""
    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            message = e.message
            if e.validator == "additionalProperties":
                valid = ", ".join(e.schema.get("properties", {})) or "none"
                message += f"; valid keys: {valid}"
            lines.append(f"  config key '{key}': {message}")
        _invalid(*lines)
    validate(cfg, schema=SCHEMA)


def _default_study():
    """The config file's name (config/smoke.yaml: smoke); config/config.yaml: default."""
    files = [Path(f) for f in workflow.configfiles]
    if not files or files[-1].resolve() == Path("config/config.yaml").resolve():
        return "default"
    name = files[-1].stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        _key_error(
            "study",
            f"the config file name {files[-1].name!r} is not a valid study name; "
            "set study: to letters, digits, '_', '.' or '-'",
        )
    return name


_check_config(config)
with open(SCHEMA) as f:
    # a config's task_defaults need not repeat every documented default
    DOCUMENTED_TASK_DEFAULTS = yaml.safe_load(f)["properties"]["task_defaults"][
        "default"
    ]
if config["gradstats"]["seeds"] > config["seeds"]:
    _key_error(
        "gradstats.seeds",
        f"{config['gradstats']['seeds']} exceeds seeds ({config['seeds']})",
    )

STUDY = config.get("study") or _default_study()
RESULTS = f"results/{STUDY}"
# the default study keeps the report where the README points; others get their own
REPORT_DIR = "report" if STUDY == "default" else f"report/{STUDY}"
REPORT_HTML = f"{REPORT_DIR}/report.html"
# One training job trains a group: the runs of one (task, cell, T, strategy, τ), every
# learning rate of its grid and every seed, in one process (bptt.study.train.fit); each run
# still gets its own folder. A run's lr folder names its factor of the task's lr.
RUN_GROUP = "task~{task}/cell~{cell}/T~{T}/strategy~{strategy}/tau~{tau}"
RUN = f"{RUN_GROUP}/lr~{{lr}}/seed~{{seed}}"
GRADSTATS = "task~{task}/cell~{cell}/T~{T}/checkpoint~{checkpoint}/seed~{seed}"
# gradstats writes the estimators' statistics and the model's lag profile
GRADSTATS_CSV = f"{RESULTS}/gradstats/{GRADSTATS}.csv"
TRAINED_LAGPROFILE_CSV = f"{RESULTS}/trained_lagprofile/{GRADSTATS}.csv"


def table_outputs(names, category):
    """Named report() outputs ``results/tables/<name>.csv``, each with its caption."""
    return {
        name: report(
            f"{RESULTS}/tables/{name}.csv",
            caption=f"../report/tables/{name}.rst",
            category=category,
        )
        for name in names
    }


def task_settings(task):
    """The task's settings on top of task_defaults, on top of the schema's defaults."""
    return {
        **DOCUMENTED_TASK_DEFAULTS,
        **config["task_defaults"],
        **(config["tasks"][task] or {}),
    }


def task_cells(task):
    """The cells trained on ``task``: its own dynamics if it has them, else the grid's."""
    return [TASKS[task].cell] if TASKS[task].cell else config["cells"]


def lr_labels():
    """The lr folder names: each factor of training.lr_factors, e.g. '0.5x'."""
    return [f"{float(f):g}x" for f in config["training"]["lr_factors"]]


def run_lr(task, label):
    """The learning rate of the run in folder lr~<label> of ``task``."""
    return float(task_settings(task)["lr"]) * float(label.removesuffix("x"))


def task_points(task):
    """[(T, τs, lag)]: the task's sequence lengths, each with its τs and (recall) lag.

    recall with ``lags``: one point per lag, with its own T and τs (the Ts are distinct,
    so (task, cell, T, τ) still names one comparison); otherwise every T of
    ``seq_lens`` with every τ of ``taus`` and the task's ``lag``.
    """
    s = task_settings(task)
    if "lags" in s:
        return [(p["seq_len"], p["taus"], p["lag"]) for p in s["lags"]]
    taus = s.get("taus", config["taus"])
    return [(T, taus, s["lag"]) for T in s.get("seq_lens", config["seq_lens"])]


def task_grid(task):
    """(sequence lengths, {T: τs}) of a task."""
    points = task_points(task)
    return [T for T, _, _ in points], {T: taus for T, taus, _ in points}


def task_lag(task, T):
    return {int(p[0]): p[2] for p in task_points(task)}[int(T)]


def _check_lags(cfg):
    """Early errors for tasks.<task>.lags (a clear message naming the key)."""
    if "lags" in cfg["task_defaults"]:
        _key_error(
            "task_defaults.lags", "lags belong to tasks.recall, not to every task"
        )
    for task, given in (cfg["tasks"] or {}).items():
        lags = (given or {}).get("lags")
        if lags is None:
            continue
        key = f"tasks.{task}.lags"
        if task != "recall":
            _key_error(key, "only the recall task has a lag")
        for other in ("seq_lens", "taus", "lag"):
            if other in given:
                _key_error(
                    f"tasks.{task}.{other}", f"set either {key} or {other}, not both"
                )
        Ts = [p["seq_len"] for p in lags]
        if len(set(Ts)) != len(Ts):
            _key_error(key, f"every lag needs its own seq_len (got {Ts})")
        for p in lags:
            if p["lag"] >= p["seq_len"]:
                _key_error(
                    key, f"lag {p['lag']} needs seq_len > lag (got {p['seq_len']})"
                )


_check_lags(config)


def _check_split(cfg):
    """Early error for a corpus split set on a task that has no corpus."""
    for task, given in (cfg["tasks"] or {}).items():
        if task != "timemachine" and "split" in (given or {}):
            _key_error(
                f"tasks.{task}.split",
                "only the timemachine task has a corpus split (d2l or book)",
            )


_check_split(config)


def timemachine_split():
    """The study's timemachine corpus split (the documented default without timemachine)."""
    if "timemachine" in config["tasks"]:
        return task_settings("timemachine")["split"]
    return DOCUMENTED_TASK_DEFAULTS["split"]


def strategies(kinds):
    """{strategy: (kind, schedule, schedule parameters)}; randomized: one per schedule."""
    out = {}
    for kind in kinds:
        if kind == "randomized":
            for name, params in config["schedules"].items():
                out[strategy_name(kind, name)] = (kind, name, params or {})
        else:
            out[strategy_name(kind)] = (kind, "", {})
    return out


def training_strategies():
    return list(strategies(config["strategies"]))


def runs():
    """Every training run of the grid as a dict of wildcards."""
    out = []
    for task in config["tasks"]:
        seq_lens, taus = task_grid(task)
        for cell, T, strategy, lr, seed in itertools.product(
            task_cells(task),
            seq_lens,
            training_strategies(),
            lr_labels(),
            range(config["seeds"]),
        ):
            for tau in [0] if strategy == "full" else [t for t in taus[T] if t < T]:
                out.append(
                    dict(
                        task=task,
                        cell=cell,
                        T=T,
                        strategy=strategy,
                        tau=tau,
                        lr=lr,
                        seed=seed,
                    )
                )
    return out


def run_files(name):
    return [f"{RESULTS}/train/{RUN}/{name}".format(**r) for r in runs()]


def group_run_files(name):
    """The file ``name`` of every run of one group, its wildcards left open."""
    return expand(
        f"{RESULTS}/train/{RUN_GROUP}/lr~{{lr}}/seed~{{seed}}/{name}",
        lr=lr_labels(),
        seed=range(config["seeds"]),
        allow_missing=True,
    )


def group_run_options(wildcards, output):
    """--lr and --seed of every run of a group, in the order of its output folders."""
    lrs, seeds = [], []
    for path in output.final:
        found = re.search(r"/lr~([^/]+)/seed~(\d+)/", path)
        lrs.append(f"{run_lr(wildcards.task, found.group(1)):g}")
        seeds.append(found.group(2))
    return f"--lr {' '.join(lrs)} --seed {' '.join(seeds)}"


def anchor_files():
    """The d2l anchor's record, if the config runs it."""
    return [f"{RESULTS}/anchor/anchor.json"] if config["anchor"]["enabled"] else []


def checkpoint_name(checkpoint):
    """Wildcard of a gradstats checkpoint: init, final, or the percent of the budget."""
    if checkpoint in ("init", "final"):
        return checkpoint
    return f"{checkpoint * 100:g}"


def checkpoint_update(task, name):
    """The update of a checkpoint (None: final, the run's result, i.e. params.npz).

    Percent checkpoints sit at fixed fractions of the task's budget of updates; a run
    stopped earlier by patience contributes its parameters at the stop.
    """
    if name == "final":
        return None
    if name == "init":
        return 0
    updates = int(task_settings(task)["updates"])
    return min(updates, max(1, round(float(name) / 100 * updates)))


def full_checkpoint_updates(task):
    """Updates the full-BPTT runs of ``task`` save (always the initialization)."""
    names = map(checkpoint_name, config["gradstats"]["checkpoints"])
    return sorted({0} | {checkpoint_update(task, n) for n in names if n != "final"})


def gradstats_seeds():
    return range(config["gradstats"]["seeds"])


def gradstats_files(pattern=GRADSTATS_CSV):
    """Every file of ``pattern`` (GRADSTATS_CSV or TRAINED_LAGPROFILE_CSV) of the study."""
    out = []
    for task in config["tasks"]:
        seq_lens, _ = task_grid(task)
        for cell, T, ck, seed in itertools.product(
            task_cells(task),
            seq_lens,
            config["gradstats"]["checkpoints"],
            gradstats_seeds(),
        ):
            out.append(
                pattern.format(
                    task=task, cell=cell, T=T, checkpoint=checkpoint_name(ck), seed=seed
                )
            )
    return out


def estimator_spec(strategy, tau):
    """Command-line spec of a training strategy at τ, e.g. randomized:power:8:alpha=1.5."""
    kind, schedule, params = strategies(config["strategies"])[strategy]
    return format_spec(kind, tau, schedule, **params)


def task_args(task, cell, T):
    s = task_settings(task)
    return (
        f"--task {task} --split {s['split']} --lag {task_lag(task, T)} "
        f"--alphabet {s['alphabet']} --units {s['units']} "
        f"--positive {s['positive']} --cell {cell} --hidden {s['hidden']} --seq-len {T} "
        f"--batch-size {s['batch_size']}"
    )


def train_args(wildcards):
    """Options shared by the runs of a group; ``--lr``, ``--seed`` and ``--out`` list the runs."""
    s = task_settings(wildcards.task)
    tr = config["training"]
    return (
        f"{task_args(wildcards.task, wildcards.cell, wildcards.T)} "
        f"--estimator {estimator_spec(wildcards.strategy, wildcards.tau)} "
        f"--optimizer {s['optimizer']} --clip {s['clip']} "
        f"--updates {s['updates']} --patience {s['patience']} "
        f"--init {s['init']} --init-scale {s['init_scale']} "
        f"--eval-every {tr['eval_every']} --eval-sequences {tr['eval_sequences']} "
        f"--dtype {tr['dtype']} --cut-pattern {tr['cut_pattern']} "
        f"--converge-window {tr['converge_window']} --converge-tol {tr['converge_tol']}"
    )


def gradstats_estimators(wildcards):
    _, taus = task_grid(wildcards.task)
    specs = []
    T = int(wildcards.T)
    for tau in [t for t in taus[T] if t < T]:
        for kind, schedule, params in strategies(
            config["gradstats"]["estimators"]
        ).values():
            specs.append(format_spec(kind, tau, schedule, **params))
    if not specs:
        raise WorkflowError(
            f"no τ < T={wildcards.T} for task {wildcards.task}: add a smaller tau"
        )
    return ",".join(specs)


def full_run_dir(wildcards):
    return f"{RESULTS}/train/{RUN}".format(
        task=wildcards.task,
        cell=wildcards.cell,
        T=wildcards.T,
        strategy="full",
        tau=0,
        lr="1x",
        seed=wildcards.seed,
    )


def gradstats_input(wildcards):
    """The full-BPTT run's result (final) or its checkpoints file (init, percents)."""
    name = "params" if wildcards.checkpoint == "final" else "checkpoints"
    return {"params": os.path.join(full_run_dir(wildcards), f"{name}.npz")}


def gradstats_checkpoint_arg(wildcards, input):
    """Which parameters, and the checkpoint's label and progress (0 init .. 1 end)."""
    name = wildcards.checkpoint
    update = checkpoint_update(wildcards.task, name)
    if name == "final":
        return f"--checkpoint {input.params} --label final --progress 1"
    progress = 0 if name == "init" else float(name) / 100
    label = name if name == "init" else f"{name}%"
    return (
        f"--checkpoint {input.params} --update {update} --label {label} "
        f"--progress {progress:g}"
    )


def full_train_args(wildcards):
    """train_args of a full-BPTT group, which also saves the gradstats checkpoints."""
    updates = ",".join(str(u) for u in full_checkpoint_updates(wildcards.task))
    return f"{train_args(wildcards)} --checkpoints {updates}"


def train_mem_mb(wildcards):
    """A generous bound: groups of 30 tanh runs at H = 64, B = 32 peaked at 210-300 MB
    (maximum resident set size; T = 64 and 32), i.e. about 7 MB a run past the
    interpreter's ~100 MB."""
    s = task_settings(wildcards.task)
    B = TASKS[wildcards.task].batch_size or int(s["batch_size"])
    gates = CELL_GATES.get(wildcards.cell, 1)
    per_run_mb = 1 + int(s["hidden"]) * B * int(wildcards.T) * gates // 64 // 64
    return 500 + config["seeds"] * len(lr_labels()) * per_run_mb


# Scheduling: both cores should stay busy to the end of the study, so the long jobs
# must not start last. Snakemake runs the ready job of highest priority first.
CELL_GATES = {"linear": 1, "tanh": 1, "influence": 1, "gru": 3, "lstm": 4}
# Gradient statistics and the full-BPTT groups (whose seed 0 the gradient statistics at
# the final parameters need) go first; then the other groups, longest first.
FIRST = 1_000_000


def train_seconds(wildcards):
    """Rough single-core seconds of one training group.

    Per run and step: 0.03 ms + 0.7 ns per multiply-add of the B·H·H·gates recurrent
    GEMM, fitted on groups of 5 seeds at the default study's shapes.
    """
    s = task_settings(wildcards.task)
    B = TASKS[wildcards.task].batch_size or int(s["batch_size"])
    H = int(s["hidden"])
    per_step_ms = 0.03 + 0.7e-6 * B * H * H * CELL_GATES[wildcards.cell]
    steps = config["seeds"] * len(lr_labels()) * int(s["updates"]) * int(wildcards.T)
    return steps * per_step_ms / 1000


def train_priority(wildcards):
    first = FIRST if wildcards.strategy == "full" else 0
    return first + int(train_seconds(wildcards))


def verdict_args():
    """The verdict's statistics settings (config key verdict) as command-line options."""
    v = config["verdict"]
    margins = " ".join(
        f"--margin {task}={scale}:{value}"
        for task in config["tasks"]
        for scale, value in v["margins"][task].items()
    )
    return (
        f"{margins} --alpha {v['alpha']} --test {v['test']} "
        f"--correction {v['correction']} --cosine-support {v['cosine_support']}"
    )


def _setting_key(task, name):
    """The config key a task setting comes from (for error messages)."""
    if name in (config["tasks"][task] or {}):
        return f"tasks.{task}.{name}"
    if name in ("seq_lens", "taus"):
        return f"tasks.{task}.lags" if "lags" in (config["tasks"][task] or {}) else name
    return f"task_defaults.{name}"


def _check_grid():
    """Constraints between keys, checked before any job with the key named.

    Pairs with τ >= T are skipped (regular(τ >= T) is full BPTT) and listed on stderr;
    a T with no τ < T at all has nothing to compare and is an error.
    """
    strategies = set(config["strategies"])
    missing = {"regular", "randomized"} - strategies
    if missing:
        _key_error(
            "strategies",
            f"must include {' and '.join(sorted(missing))}: the verdict compares "
            "randomized(τ̄ = τ) with regular(τ)",
        )
    if "full" not in strategies:
        _key_error(
            "gradstats.checkpoints",
            "the gradient statistics are measured along the full-BPTT runs' training; "
            "add full to strategies",
        )
    randomized = "randomized" in strategies or (
        "randomized" in config["gradstats"]["estimators"]
    )
    skipped = []
    for task in config["tasks"]:
        s = task_settings(task)
        seq_lens, taus = task_grid(task)
        params = {k: s[k] for k in TASK_PARAMS.get(task, ())}
        try:
            make_task(task, **params)
        except ValueError as e:
            named = [k for k in reversed(params) if k in str(e)] or list(params)
            _key_error(_setting_key(task, named[0]), str(e))
        if task == "recall" and "lags" not in s:  # lags: checked by _check_lags
            short = [T for T in seq_lens if T <= s["lag"]]
            if short:
                _key_error(
                    _setting_key(task, "lag"),
                    f"recall needs every sequence length T > lag={s['lag']}; "
                    f"{_setting_key(task, 'seq_lens')} has {short}",
                )
        for T in seq_lens:
            used = [tau for tau in taus[T] if tau < T]
            if not used:
                _key_error(
                    _setting_key(task, "taus"),
                    f"task {task}: no τ below T={T} ({_setting_key(task, 'seq_lens')}); "
                    "τ >= T never cuts (full BPTT), so nothing is compared at this T",
                )
            skipped += [(task, T, tau) for tau in taus[T] if tau >= T]
        for tau in sorted({tau for T in seq_lens for tau in taus[T] if tau < T}):
            if not randomized:
                break
            if tau < 2:
                _key_error(
                    _setting_key(task, "taus"),
                    f"task {task}: τ={tau}; randomized schedules need a mean segment "
                    "length τ̄ >= 2 (τ̄ = 1 cuts every step)",
                )
            for name, params in config["schedules"].items():
                try:
                    parse_estimator(estimator_spec(f"randomized-{name}", tau))
                except ValueError as e:
                    named = [k for k in (params or {}) if k in str(e)]
                    key = f"schedules.{name}" + (f".{named[0]}" if named else "")
                    _key_error(key, f"at τ̄={tau} ({_setting_key(task, 'taus')}): {e}")
    if skipped:
        pairs = ", ".join(f"{task} T={T} τ={tau}" for task, T, tau in skipped)
        print(
            f"Note: pairs with τ >= T are skipped (regular(τ >= T) is full BPTT): {pairs}",
            file=sys.stderr,
        )


TASK_PARAMS = {"recall": ("alphabet", "lag"), "influence": ("units", "positive")}

_check_grid()


def drop_stale_report():
    """After a failed run: remove the report if its tables changed without it.

    A run that rebuilt (or deleted) tables and then failed before the report would
    otherwise leave a report that no longer describes them.
    """
    html = Path(REPORT_HTML)
    if not html.exists():
        return
    tables = [Path(f"{RESULTS}/tables/{n}.csv") for n in TABLES + VERDICT_TABLES]
    built = html.stat().st_mtime
    if any(not t.exists() or t.stat().st_mtime > built for t in tables):
        html.unlink()
        print(
            f"Removed {html}: this run changed its tables and failed before "
            "rebuilding it. Fix the error above and rerun to get a new report.",
            file=sys.stderr,
        )


# -- recovery from a hard kill ---------------------------------------------------------
# Snakemake's lock outlives a killed run ("Directory cannot be locked"). Each run
# records its process; a later run on the same host that finds only dead owners
# removes the stale lock with `snakemake --unlock` and carries on (incomplete jobs are
# rerun through the profile's rerun-incomplete).
OWNERS = Path(".snakemake/bptt-owners")


def _owner_record():
    return OWNERS / f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_owner():
    OWNERS.mkdir(parents=True, exist_ok=True)
    _owner_record().touch()


def release_owner():
    _owner_record().unlink(missing_ok=True)


def unlock_after_a_killed_run():
    if (
        not workflow.is_main_process
        or os.environ.get("BPTT_UNLOCKING")
        or not OWNERS.is_dir()
    ):
        return
    host = socket.gethostname()
    stale, live = [], []
    for record in OWNERS.iterdir():
        name, _, pid = record.name.rpartition("-")
        ((stale if name == host and not _alive(int(pid)) else live)).append(record)
    if not stale or live:
        return
    files = [
        a for f in workflow.overwrite_configfiles for a in ("--configfile", str(f))
    ]
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--unlock", "--snakefile"]
        + [str(workflow.main_snakefile), *files],
        env={**os.environ, "BPTT_UNLOCKING": "1"},
        capture_output=True,
        check=True,
    )
    for record in stale:
        record.unlink(missing_ok=True)
    print(
        "Note: removed the lock left by a run that was killed; its unfinished jobs rerun.",
        file=sys.stderr,
    )


unlock_after_a_killed_run()
