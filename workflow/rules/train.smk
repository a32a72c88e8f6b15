rule train:
    input:
        corpus="results/corpus/timemachine.json",
    output:
        final=f"{RESULTS}/train/{RUN}/final.json",
        curve=f"{RESULTS}/train/{RUN}/curve.csv",
        params=f"{RESULTS}/train/{RUN}/params.npz",
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN}.tsv"
    wildcard_constraints:
        T=r"\d+",
        tau=r"\d+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=30,
    params:
        args=train_args,
        outdir=lambda wildcards, output: os.path.dirname(output.final),
    shell:
        "python -m bptt train {params.args} --out {params.outdir} > {log} 2>&1"
