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
    shell:
        "python -m bptt corpus --out {output} > {log} 2>&1"
