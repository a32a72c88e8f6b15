"""The README's code runs as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_runs():
    blocks = python_blocks()
    assert blocks, "the README shows how to use the package"
    for code in blocks:
        namespace = {}
        exec(compile(code, str(README), "exec"), namespace)
        if "G" in namespace:
            G, model = namespace["G"], namespace["model"]
            assert G.ndim == 2 and G.shape[1] == model.n_params
            assert (G != 0).any()
