"""Templates shipped with the package (package data; see pyproject's package-data)."""

from pathlib import Path

REPORT = Path(__file__).with_name("report.html.j2")  # report.html; a rule input, so edits rerun it
