"""The README a newcomer finishes (short, every link leads somewhere), and the docs site: it builds
strictly (a broken link fails), and its reference pages, generated from the code, list every run
setting, environment variable, document status and command."""

import os
import re
import subprocess
import sys
from pathlib import Path

from batch_pipeline import settings
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.cli.main import build_parser
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline_tests.conftest import REPO_ROOT


def test_the_readme_is_short_and_each_of_its_links_leads_to_a_file():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    targets = [t for t in re.findall(r"\]\(([^)]+)\)", readme) if not t.startswith(("http://", "https://", "#"))]
    assert targets and [t for t in targets if not (REPO_ROOT / t).exists()] == []


def test_the_site_builds_strictly_with_a_reference_generated_from_the_code(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "DISABLE_MKDOCS_2_WARNING": "true"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    reference = {
        name: text_of(site / "reference" / f"{name}.html") for name in ("run-config", "settings", "statuses", "cli")
    }
    for name in BatchRequest.model_fields:
        assert f"{name}" in reference["run-config"], name
    assert "context.model_key" in reference["run-config"] and "checks.max_failure_rate" in reference["run-config"]
    for constant, variable in vars(settings).items():
        if constant.endswith("_ENV") and isinstance(variable, str):
            assert variable in reference["settings"], variable
    package = Path(settings.__file__).parent
    elsewhere = [
        m for path in package.rglob("*.py") for m in re.findall(r'^[A-Z_]+_ENV = "([A-Z_]+)"', path.read_text(), re.M)
    ]
    assert "BATCH_PIPELINE_FAILURE_WEBHOOK_URL" in elsewhere
    assert all(variable in reference["settings"] for variable in elsewhere)
    assert all(status.value in reference["statuses"] for status in DocumentStatus)
    commands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert all(f"batch-pipeline {command}" in reference["cli"] for command in commands)
    assert (site / "search" / "search_index.json").exists()  # the site has search


def text_of(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text())
