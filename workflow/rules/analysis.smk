rule tables:
    input:
        runs=run_files("final.json"),
        curves=run_files("curve.csv"),
        gradstats=gradstats_files(),
        lagprofile=f"{RESULTS}/lagprofile/lagprofile.csv",
    output:
        runs=report(
            f"{RESULTS}/tables/runs.csv",
            caption="../report/runs.rst",
            category="Tables",
        ),
        curves=report(
            f"{RESULTS}/tables/curves.csv",
            caption="../report/curves_table.rst",
            category="Tables",
        ),
        summary=report(
            f"{RESULTS}/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        gradstats=report(
            f"{RESULTS}/tables/gradstats.csv",
            caption="../report/gradstats_table.rst",
            category="Tables",
        ),
        lagprofile=report(
            f"{RESULTS}/tables/lagprofile.csv",
            caption="../report/lagprofile_table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.runs),
    shell:
        "python -m bptt tables --runs {input.runs} --gradstats {input.gradstats} "
        "--lagprofile {input.lagprofile} --out-dir {params.outdir} > {log} 2>&1"


rule verdict:
    input:
        tables=rules.tables.output,
    output:
        verdict=report(
            f"{RESULTS}/tables/verdict.csv",
            caption="../report/verdict.rst",
            category="Verdict",
        ),
        counts=report(
            f"{RESULTS}/tables/verdict_counts.csv",
            caption="../report/verdict_counts.rst",
            category="Verdict",
        ),
        reasons=report(
            f"{RESULTS}/tables/reasons.csv",
            caption="../report/reasons.rst",
            category="Verdict",
        ),
        findings=report(
            f"{RESULTS}/tables/findings.csv",
            caption="../report/findings.rst",
            category="Verdict",
        ),
        run_status=report(
            f"{RESULTS}/tables/run_status.csv",
            caption="../report/run_status.rst",
            category="Verdict",
        ),
    log:
        f"{RESULTS}/logs/verdict.log",
    benchmark:
        f"{RESULTS}/benchmarks/verdict.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        outdir=lambda wildcards, output: os.path.dirname(output.verdict),
        settings=verdict_args(),
    shell:
        "python -m bptt verdict --tables {params.tables} {params.settings} "
        "--out-dir {params.outdir} > {log} 2>&1"


rule figures:
    input:
        tables=rules.tables.output,
        verdict=rules.verdict.output,
    output:
        svg=[
            report(
                f"{RESULTS}/figures/{name}.svg",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURE_NAMES
        ],
        png=[f"{RESULTS}/figures/{name}.png" for name in FIGURE_NAMES],
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        outdir=lambda wildcards, output: os.path.dirname(output.png[0]),
    shell:
        "python -m bptt figures --tables {params.tables} --out-dir {params.outdir} > {log} 2>&1"


rule report_html:
    input:
        figures=rules.figures.output.png,
        verdict=rules.verdict.output,
        template=str(REPORT_TEMPLATE),
    output:
        "report/report.html",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input.verdict[0]),
        captions=os.path.join(workflow.basedir, "workflow", "report"),
        benchmarks=f"{RESULTS}/benchmarks",
        config=workflow.configfiles[-1],
    shell:
        "python -m bptt report --tables {params.tables} --figures {input.figures} "
        "--captions {params.captions} --config {params.config} "
        "--benchmarks {params.benchmarks} --out {output} > {log} 2>&1"
