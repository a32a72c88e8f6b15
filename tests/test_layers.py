"""The package has two layers: the study imports the engine, never the other way round."""

import ast
import subprocess
import sys
from pathlib import Path

import bptt

PKG = Path(bptt.__file__).resolve().parent


def _imported_modules(path, package):
    """Absolute names of the modules that `path` (a module of `package`) imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            out.add(stem)
            out.update(f"{stem}.{a.name}" for a in node.names)
    return out


def test_the_package_is_two_layers():
    top = sorted(p.name for p in PKG.iterdir() if not p.name.startswith((".", "__pycache__")))
    assert top == ["__init__.py", "__main__.py", "engine", "study"]


def test_engine_sources_import_nothing_from_the_study():
    modules = sorted((PKG / "engine").rglob("*.py"))
    assert len(modules) > 5
    offenders = {}
    for path in modules:
        names = _imported_modules(path, "bptt.engine")
        bad = sorted(n for n in names if n == "bptt.study" or n.startswith("bptt.study."))
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_importing_the_engine_loads_no_study_module():
    engine = sorted(p.stem for p in (PKG / "engine").glob("*.py") if p.stem != "__init__")
    code = ("import sys, importlib\n"
            f"for name in {engine!r}: importlib.import_module('bptt.engine.' + name)\n"
            "import bptt\n"
            "print(sorted(m for m in sys.modules if m.startswith('bptt.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert "bptt.engine.backprop" in loaded
    assert [m for m in loaded if m.startswith("bptt.study")] == []


def test_the_engine_needs_numpy_alone():
    code = ("import sys, bptt.engine.estimators, bptt.engine.initialization, bptt.engine.costs\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'scipy', 'pandas', 'matplotlib', 'seaborn', 'jinja2', 'yaml', 'snakemake'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_public_api_imports():
    from bptt import Model, estimators  # noqa: F401  (README, "Using the package")
    from bptt import backprop, cells, schedules  # noqa: F401

    assert estimators.sample is bptt.engine.estimators.sample
