# bptt: does randomized truncation of BPTT beat regular truncation?
# Run: snakemake --cores all   (config/config.yaml; report in report/report.html)
from snakemake.utils import min_version

from bptt.study.io import check_yaml

min_version("9.17")  # priority: a function of the wildcards


# config/config.yaml is the default study; a --configfile replaces it instead of being
# merged into it, so that config/smoke.yaml and config/paper.yaml are complete studies.
if not workflow.overwrite_configfiles:
    # Snakemake's own message for a YAML syntax error names no file or line
    check_yaml("config/config.yaml")

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/anchor.smk"
include: "workflow/rules/gradstats.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/bench.smk"


rule all:
    input:
        REPORT_HTML,
        expand(f"{RESULTS}/figures/{{name}}.png", name=FIGURES),
        expand(
            f"{RESULTS}/tables/{{name}}.csv",
            name=TABLES + VERDICT_TABLES + REASONS_TABLES,
        ),


onstart:
    record_owner()


onsuccess:
    release_owner()


onerror:
    release_owner()
    drop_stale_report()
