import itertools
import re

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bptt.data import TASKS
from bptt.estimators import format_spec, strategy_name
from bptt.names import BENCH_FIGURE, FIGURES, TABLES, VERDICT_TABLES
from bptt.templates import REPORT as REPORT_TEMPLATE

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def _check_config(cfg):
    """Validate with a message that names the offending key, then fill the defaults."""
    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg),
        key=lambda e: list(e.path),
    )
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"  config key '{key}': {e.message}")
        raise WorkflowError("Invalid configuration:\n" + "\n".join(lines))
    validate(cfg, schema=SCHEMA)


_check_config(config)
with open(SCHEMA) as f:
    # a config's task_defaults need not repeat every documented default
    DOCUMENTED_TASK_DEFAULTS = yaml.safe_load(f)["properties"]["task_defaults"][
        "default"
    ]

RESULTS = "results"
# One training job trains a group: the runs of one (task, cell, T, strategy, τ), every
# learning rate of its grid and every seed, in one process (bptt.train.fit); each run
# still gets its own folder. A run's lr folder names its factor of the task's lr.
RUN_GROUP = "task~{task}/cell~{cell}/T~{T}/strategy~{strategy}/tau~{tau}"
RUN = f"{RUN_GROUP}/lr~{{lr}}/seed~{{seed}}"
GRADSTATS = "task~{task}/cell~{cell}/T~{T}/checkpoint~{checkpoint}"


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


def task_grid(task):
    s = task_settings(task)
    return s.get("seq_lens", config["seq_lens"]), s.get("taus", config["taus"])


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
            for tau in [0] if strategy == "full" else [t for t in taus if t < T]:
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


def gradstats_files():
    out = []
    for task in config["tasks"]:
        seq_lens, _ = task_grid(task)
        for cell, T, ck in itertools.product(
            task_cells(task), seq_lens, config["gradstats"]["checkpoints"]
        ):
            out.append(
                f"{RESULTS}/gradstats/{GRADSTATS}.csv".format(
                    task=task, cell=cell, T=T, checkpoint=ck
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
        f"--task {task} --lag {s['lag']} --alphabet {s['alphabet']} --units {s['units']} "
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
    for tau in [t for t in taus if t < int(wildcards.T)]:
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
        seed=0,
    )


def gradstats_input(wildcards):
    if wildcards.checkpoint == "final":
        return {"params": os.path.join(full_run_dir(wildcards), "params.npz")}
    return {}


def gradstats_checkpoint_arg(wildcards, input):
    if wildcards.checkpoint == "final":
        return f"--checkpoint {input.params}"
    return "--init-seed 0"


def train_mem_mb(wildcards):
    """A generous bound: a group of 5 GRU runs at T = 64, H = 64, B = 32 peaks at
    about 125 MB (maximum resident set size)."""
    s = task_settings(wildcards.task)
    B = TASKS[wildcards.task].batch_size or int(s["batch_size"])
    per_run = int(s["hidden"]) * B * int(wildcards.T) // 64
    return 500 + per_run + config["seeds"] * len(lr_labels()) * per_run // 8


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
