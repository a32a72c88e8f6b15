"""Study-level commands (tables, figures, verdict, report): see the pipeline."""


def add_study_commands(sub, fmt):
    return sub
