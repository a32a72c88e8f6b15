"""Each figure and table name has one home, bptt.names, and one caption file."""

import re
from pathlib import Path

import pytest

from bptt import names

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "workflow" / "report"
WORKFLOW = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
KINDS = {"figures": names.FIGURES + names.APPENDIX_FIGURES,
         "tables": names.TABLES + names.VERDICT_TABLES}


@pytest.mark.parametrize("kind", KINDS)
def test_every_name_has_one_caption_and_every_caption_a_name(kind):
    files = {p.stem for p in (CAPTIONS / kind).glob("*.rst")}
    assert files == set(KINDS[kind])
    for name in KINDS[kind]:
        assert len((CAPTIONS / kind / f"{name}.rst").read_text().split()) > 3


def test_no_caption_outside_its_folder():
    assert sorted(p.name for p in CAPTIONS.glob("*.rst")) == ["workflow.rst"]


def test_the_workflow_spells_no_figure_or_table_name():
    """The workflow takes its figure and table names from bptt.names, never as literals."""
    spelled = {}
    for path in WORKFLOW:
        text = path.read_text()
        for name in KINDS["figures"] + KINDS["tables"]:
            # a path of the file, or a quoted name that is not a config key
            if re.search(rf"(figures|tables|report)/{name}\.|(?<!\[)[\"']{name}[\"']", text):
                spelled.setdefault(path.name, []).append(name)
    assert spelled == {}


def test_figures_draws_exactly_the_declared_figures():
    from bptt.figures import ALL_FIGURES, FIGURES

    assert tuple(FIGURES) == names.FIGURES
    assert tuple(ALL_FIGURES) == names.FIGURES + names.APPENDIX_FIGURES
