# The full-BPTT groups also save the parameters at the gradstats checkpoints (init and
# fractions of the budget) into checkpoints.npz; the other groups save none.
use rule train as train_full with:
    output:
        final=group_run_files("final.json"),
        curve=group_run_files("curve.csv"),
        params=group_run_files("params.npz"),
        checkpoints=group_run_files("checkpoints.npz"),
    wildcard_constraints:
        T=r"\d+",
        tau=r"\d+",
        strategy="full",
    params:
        args=full_train_args,
        runs=group_run_options,
        outdirs=lambda wildcards, output: [os.path.dirname(f) for f in output.final],


ruleorder: train_full > train


rule gradstats:
    input:
        unpack(gradstats_input),
    output:
        stats=GRADSTATS_CSV,
        lagprofile=TRAINED_LAGPROFILE_CSV,
    log:
        f"{RESULTS}/logs/gradstats/{GRADSTATS}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gradstats/{GRADSTATS}.tsv"
    wildcard_constraints:
        T=r"\d+",
        seed=r"\d+",
        checkpoint=r"init|final|\d+(\.\d+)?",
    priority: 2 * FIRST
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        task=lambda wildcards: task_args(wildcards.task, wildcards.cell, wildcards.T),
        estimators=gradstats_estimators,
        checkpoint=gradstats_checkpoint_arg,
        samples=config["gradstats"]["samples"],
        batches=config["gradstats"]["batches"],
        window=config["gradstats"]["window"],
        cut_pattern=config["training"]["cut_pattern"],
    shell:
        "python -m bptt gradstats {params.task} {params.checkpoint} "
        "--estimators {params.estimators} --samples {params.samples} "
        "--batches {params.batches} --window {params.window} --seed {wildcards.seed} "
        "--cut-pattern {params.cut_pattern} "
        "--lagprofile-out {output.lagprofile} --out {output.stats} > {log} 2>&1"


rule lagprofile:
    output:
        f"{RESULTS}/lagprofile/lagprofile.csv",
    log:
        f"{RESULTS}/logs/lagprofile.log",
    benchmark:
        f"{RESULTS}/benchmarks/lagprofile.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        cells=",".join(config["lagprofile"]["cells"]),
        radii=",".join(str(r) for r in config["lagprofile"]["radii"]),
        seq_len=config["lagprofile"]["seq_len"],
        hidden=config["lagprofile"]["hidden"],
        seeds=config["lagprofile"]["seeds"],
    shell:
        "python -m bptt lagprofile --cells {params.cells} --radii {params.radii} "
        "--seq-len {params.seq_len} --hidden {params.hidden} --seeds {params.seeds} "
        "--out {output} > {log} 2>&1"
