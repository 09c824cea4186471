"""What `pip install batch_pipeline` must bring: every third-party module the package imports is a
declared runtime dependency (not one that only an extra or another package happens to pull in),
and every dependency is bounded below its next major. `.ci/run` also proves it with a real
plain install."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def third_party_imports() -> set[str]:
    found = set()
    for path in (ROOT / "batch_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "batch_pipeline"}


def test_every_imported_module_is_a_declared_runtime_dependency():
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party_imports()):
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not declared in [project.dependencies]: {missing}"


@pytest.mark.parametrize(
    "requirement",
    PYPROJECT["project"]["dependencies"]
    + [
        r
        for extra in PYPROJECT["project"]["optional-dependencies"].values()
        for r in extra
        if "batch_pipeline[" not in r
    ],
)
def test_every_dependency_has_an_upper_bound(requirement):
    assert re.search(r"<|==", requirement), f"{requirement} has no upper bound"
