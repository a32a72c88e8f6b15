rule corpus:
    output:
        f"{RESULTS}/corpus/timemachine.json",
    log:
        f"{RESULTS}/logs/corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/corpus.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        split=timemachine_split(),
    shell:
        "python -m bptt corpus --split {params.split} --out {output} > {log} 2>&1"
