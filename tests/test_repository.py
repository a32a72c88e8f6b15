"""The repository documents itself: the design ships with it and the references resolve."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
DOCUMENTED = ["README.md", "Snakefile", *map(str, Path(ROOT).glob("src/bptt/**/*.py")),
              *map(str, Path(ROOT).glob("workflow/**/*.smk"))]


def _texts():
    for name in DOCUMENTED:
        path = ROOT / name
        yield path.relative_to(ROOT), path.read_text()


def test_nothing_points_outside_the_repository():
    offenders = [str(p) for p, text in _texts() if "../shared" in text or "DESIGN.md" in text]
    assert offenders == []


def test_design_sections_cited_in_the_code_exist():
    headings = set(re.findall(r"^## (\d+)\.", DESIGN.read_text(), flags=re.M))
    cited = {(str(p), n) for p, text in _texts() for n in re.findall(r"docs/design\.md §(\d+)", text)}
    assert cited, "the modules cite docs/design.md sections"
    missing = sorted((p, n) for p, n in cited if n not in headings)
    assert missing == []
