"""The layout's contract: each package imports only packages below it, and nothing below the
Dagster layer (defs/) needs Dagster."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "batch_pipeline"

# Top to bottom, as docs/guide/development.md's layout lists them; a room may import its own modules and lower rooms.
LAYERS = [
    "cli",
    "definitions",
    "defs",
    "launch",
    "workers",
    "evaluation",
    "report",
    "batch",
    "llm",
    "costs",
    "rate_limits",
    "store",
    "documents",
    "conversion",
    "context",
    "outcome",
    "analysis",
    "settings",
]
# Below the Dagster layer: plain Python.
PLAIN = LAYERS[LAYERS.index("defs") + 1 :]


def room_of(module: str) -> str:
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "batch_pipeline":
            found.update(f"batch_pipeline.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith("batch_pipeline.")}


def test_every_room_is_in_the_layer_order():
    rooms = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert rooms - {"__init__"} == set(LAYERS)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_run_downward(path):
    relative = path.relative_to(PACKAGE)
    if relative.name == "__init__.py" and len(relative.parts) == 1:
        return
    room = relative.parts[0].removesuffix(".py")
    upward = [m for m in imports(path) if LAYERS.index(room_of(m)) < LAYERS.index(room)]
    assert not upward, f"{relative} imports from above its layer: {upward}"


def test_the_plain_packages_import_without_dagster():
    modules = [f"batch_pipeline.{room}" for room in PLAIN]
    modules += [f"batch_pipeline.{p.relative_to(PACKAGE).with_suffix('').as_posix().replace('/', '.')}"
                for room in PLAIN if (PACKAGE / room).is_dir() for p in (PACKAGE / room).glob("*.py") if p.stem != "__init__"]  # fmt: skip
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('dagster' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
