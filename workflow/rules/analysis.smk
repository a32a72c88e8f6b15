rule tables:
    input:
        runs=run_files("final.json"),
        curves=run_files("curve.csv"),
        gradstats=gradstats_files(),
        lagprofile=f"{RESULTS}/lagprofile/lagprofile.csv",
        anchor=anchor_files(),
        lagprofile_trained=gradstats_files(TRAINED_LAGPROFILE_CSV),
    output:
        **table_outputs(TABLES, "Tables"),
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
        "--lagprofile {input.lagprofile} --anchor {input.anchor} "
        "--lagprofile-trained {input.lagprofile_trained} "
        "--out-dir {params.outdir} > {log} 2>&1"


rule verdict:
    input:
        tables=rules.tables.output,
    output:
        **table_outputs(VERDICT_TABLES, "Verdict"),
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


rule reasons:
    input:
        tables=rules.tables.output,
        verdict=rules.verdict.output,
    output:
        **table_outputs(REASONS_TABLES, "Reasons"),
    log:
        f"{RESULTS}/logs/reasons.log",
    benchmark:
        f"{RESULTS}/benchmarks/reasons.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input.verdict[0]),
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
        cosine_support=config["verdict"]["cosine_support"],
    shell:
        "python -m bptt reasons --tables {params.tables} "
        "--cosine-support {params.cosine_support} --out-dir {params.outdir} > {log} 2>&1"


rule figures:
    input:
        tables=rules.tables.output,
        verdict=rules.verdict.output,
        reasons=rules.reasons.output,
    output:
        svg=[
            report(
                f"{RESULTS}/figures/{name}.svg",
                caption=f"../report/figures/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
        png=[f"{RESULTS}/figures/{name}.png" for name in FIGURES],
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


# The report depends on every table, so it is rebuilt whenever they change; a run that
# fails after changing them removes it (onerror in the Snakefile: drop_stale_report).
rule report_html:
    input:
        figures=rules.figures.output.png,
        tables=rules.tables.output,
        verdict=rules.verdict.output,
        template=str(REPORT_TEMPLATE),
    output:
        REPORT_HTML,
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input.verdict[0]),
        captions=os.path.join(workflow.basedir, "workflow", "report", "figures"),
        benchmarks=f"{RESULTS}/benchmarks",
        config=workflow.configfiles[-1],
    shell:
        "python -m bptt report --tables {params.tables} --figures {input.figures} "
        "--captions {params.captions} --config {params.config} "
        "--benchmarks {params.benchmarks} --out {output} > {log} 2>&1"
