rule corpus:
    output:
        "results/corpus/timemachine.json",
    log:
        "results/logs/corpus.log",
    benchmark:
        "results/benchmarks/corpus.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    shell:
        "python -m bptt corpus --out {output} > {log} 2>&1"
