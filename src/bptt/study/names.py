"""Names shared by the package and the workflow, each declared once.

The Snakemake workflow imports them (``workflow/rules/common.smk``) for its targets,
and the commands that write the files and the code that reads them use the same
names.  Each figure and table has one caption, ``workflow/report/figures/<name>.rst``
or ``workflow/report/tables/<name>.rst``, which Snakemake's report and report.html
both show.  Nothing heavy is imported here.
"""

FIGURES = (
    "segmentation",
    "lagprofile",
    "bias",
    "variance",
    "cosine",
    "curves",
    "final_metric",
    "verdict_heatmap",
    "reasons_training",
    "lagprofile_trained",
    "reasons_outcome",
    "recall_lags",
    "realised_costs",
    "walltime",
)
"""The study's figures in report order: ``results/figures/<name>.svg`` and ``.png``."""

BENCH_FIGURE = "bench"
"""The figure of the opt-in peer benchmark (``snakemake bench``), the report's appendix."""

APPENDIX_FIGURES = (BENCH_FIGURE,)

TABLES = ("runs", "runs_all", "lr_choices", "curves", "summary", "gradstats", "lagprofile", "anchor",
          "lagprofile_trained")
"""Written by ``python -m bptt tables``: ``results/tables/<name>.csv``. ``runs`` and
``curves`` hold each grid point at its chosen learning rate, ``runs_all`` every rate."""

VERDICT_TABLES = ("verdict", "verdict_counts", "reasons", "findings", "run_status", "convergence",
                  "unconverged", "clipping", "costs", "influence_theta", "lr_edges")
"""Written by ``python -m bptt verdict``: ``results/tables/<name>.csv`` (the last six
are the training audit of ``bptt.study.audit``)."""

REASONS_TABLES = ("reasons_training", "reasons_outcomes")
"""Written by ``python -m bptt reasons``: ``results/tables/<name>.csv``."""
