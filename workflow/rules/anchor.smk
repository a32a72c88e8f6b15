rule anchor:
    input:
        corpus=f"{RESULTS}/corpus/timemachine.json",
    output:
        anchor=f"{RESULTS}/anchor/anchor.json",
        final=f"{RESULTS}/anchor/final.json",
        curve=f"{RESULTS}/anchor/curve.csv",
    log:
        f"{RESULTS}/logs/anchor.log",
    benchmark:
        f"{RESULTS}/benchmarks/anchor.tsv"
    priority: 2 * FIRST
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        updates=config["anchor"]["updates"],
        outdir=lambda wildcards, output: os.path.dirname(output.anchor),
    shell:
        "python -m bptt anchor --updates {params.updates} --out {params.outdir} "
        "--quiet > {log} 2>&1"
