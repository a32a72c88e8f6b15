# Opt-in peer benchmark against PyTorch: `snakemake --cores 1 bench` (needs the `peer`
# extra: pip install -e ".[peer]"). Its figure joins the report's appendix on the next
# `snakemake --forcerun report_html`.


rule peer_benchmark:
    output:
        f"{RESULTS}/bench/peer.csv",
    log:
        f"{RESULTS}/logs/bench/peer.log",
    benchmark:
        f"{RESULTS}/benchmarks/bench/peer.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        runtime=60,
    params:
        quick="--quick" if config["bench"]["quick"] else "",
    shell:
        "python bench/peer.py {params.quick} --out {output} > {log} 2>&1"


rule bench_figure:
    input:
        f"{RESULTS}/bench/peer.csv",
    output:
        png=f"{RESULTS}/figures/{BENCH_FIGURE}.png",
        svg=report(
            f"{RESULTS}/figures/{BENCH_FIGURE}.svg",
            caption=f"../report/figures/{BENCH_FIGURE}.rst",
            category="Appendix",
        ),
    log:
        f"{RESULTS}/logs/bench/figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/bench/figure.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        figure=BENCH_FIGURE,
        outdir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m bptt figures --only {params.figure} --bench {input} "
        "--out-dir {params.outdir} > {log} 2>&1"


rule bench:
    input:
        rules.peer_benchmark.output,
        rules.bench_figure.output,
