"""Each figure and table name has one home, bptt.study.names, and one caption file."""

import re
from pathlib import Path

import pytest

from bptt.study import names

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "workflow" / "report"
WORKFLOW = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
KINDS = {"figures": names.FIGURES + names.APPENDIX_FIGURES,
         "tables": names.TABLES + names.VERDICT_TABLES + names.REASONS_TABLES}


@pytest.mark.parametrize("kind", KINDS)
def test_every_name_has_one_caption_and_every_caption_a_name(kind):
    files = {p.stem for p in (CAPTIONS / kind).glob("*.rst")}
    assert files == set(KINDS[kind])
    for name in KINDS[kind]:
        assert len((CAPTIONS / kind / f"{name}.rst").read_text().split()) > 3


def test_no_caption_outside_its_folder():
    assert sorted(p.name for p in CAPTIONS.glob("*.rst")) == ["workflow.rst"]


def test_the_workflow_spells_no_figure_or_table_name():
    """The workflow takes its figure and table names from bptt.study.names, never as literals."""
    spelled = {}
    for path in WORKFLOW:
        text = path.read_text()
        for name in KINDS["figures"] + KINDS["tables"]:
            # a path of the file, or a quoted name that is not a config key
            if re.search(rf"(figures|tables|report)/{name}\.|(?<!\[)[\"']{name}[\"']", text):
                spelled.setdefault(path.name, []).append(name)
    assert spelled == {}


def test_figures_draws_exactly_the_declared_figures():
    from bptt.study.figures import ALL_FIGURES, FIGURES

    assert tuple(FIGURES) == names.FIGURES
    assert tuple(ALL_FIGURES) == names.FIGURES + names.APPENDIX_FIGURES


def _schema():
    import yaml

    return yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def _valid_values():
    """(where in the schema, its valid values, the package's registry of them)."""
    from bptt.engine.cells import CELLS
    from bptt.study.data import TASKS
    from bptt.engine.estimators import KINDS
    from bptt.engine.initialization import INITS
    from bptt.engine.schedules import SCHEDULES
    from bptt.study.stats import CORRECTIONS, TESTS
    from bptt.study.train import CUT_PATTERNS, DTYPES, OPTIMIZERS

    s = _schema()
    p, task = s["properties"], s["definitions"]["task_settings"]["properties"]
    own_cells = {"influence"}  # the influence task's own dynamics, not a cell to choose
    return [
        ("tasks", set(p["tasks"]["properties"]), set(TASKS)),
        ("schedules", set(p["schedules"]["properties"]), set(SCHEDULES)),
        ("cells", set(p["cells"]["items"]["enum"]), set(CELLS) - own_cells),
        ("lagprofile.cells", set(p["lagprofile"]["properties"]["cells"]["items"]["enum"]),
         set(CELLS) - own_cells),
        ("strategies", set(p["strategies"]["items"]["enum"]), set(KINDS)),
        ("gradstats.estimators", set(p["gradstats"]["properties"]["estimators"]["items"]["enum"]),
         set(KINDS) - {"full"}),
        ("optimizer", set(task["optimizer"]["enum"]), set(OPTIMIZERS)),
        ("init", set(task["init"]["enum"]), set(INITS)),
        ("training.dtype", set(p["training"]["properties"]["dtype"]["enum"]), set(DTYPES)),
        ("training.cut_pattern", set(p["training"]["properties"]["cut_pattern"]["enum"]),
         set(CUT_PATTERNS)),
        ("verdict.test", set(p["verdict"]["properties"]["test"]["enum"]), set(TESTS)),
        ("verdict.correction", set(p["verdict"]["properties"]["correction"]["enum"]),
         set(CORRECTIONS)),
    ]


def test_the_schemas_valid_values_are_the_packages():
    """The config schema must list its choices statically; they are the package's registries."""
    differ = {key: (schema, package) for key, schema, package in _valid_values() if schema != package}
    assert differ == {}
