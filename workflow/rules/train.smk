rule train:
    input:
        corpus=f"{RESULTS}/corpus/timemachine.json",
    output:
        final=group_run_files("final.json"),
        curve=group_run_files("curve.csv"),
        params=group_run_files("params.npz"),
    log:
        f"{RESULTS}/logs/train/{RUN_GROUP}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN_GROUP}.tsv"
    wildcard_constraints:
        T=r"\d+",
        tau=r"\d+",
    priority: train_priority
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=30,
    params:
        args=train_args,
        runs=group_run_options,
        outdirs=lambda wildcards, output: [os.path.dirname(f) for f in output.final],
    shell:
        "python -m bptt train {params.args} {params.runs} "
        "--out {params.outdirs} > {log} 2>&1"
