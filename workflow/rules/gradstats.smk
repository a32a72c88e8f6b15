rule gradstats:
    input:
        unpack(gradstats_input),
    output:
        f"{RESULTS}/gradstats/{GRADSTATS}.csv",
    log:
        f"{RESULTS}/logs/gradstats/{GRADSTATS}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gradstats/{GRADSTATS}.tsv"
    wildcard_constraints:
        T=r"\d+",
        checkpoint="init|final",
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
        cut_pattern=config["training"]["cut_pattern"],
    shell:
        "python -m bptt gradstats {params.task} {params.checkpoint} "
        "--estimators {params.estimators} --samples {params.samples} "
        "--batches {params.batches} --cut-pattern {params.cut_pattern} "
        "--label {wildcards.checkpoint} --out {output} > {log} 2>&1"


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
