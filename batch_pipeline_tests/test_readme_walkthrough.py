"""The README's own recipes, run as written (bash, its exact lines) on a fresh folder of mixed
files, in a copy of the checkout where `make demo` prepared .dagster_home: they work, and what
they print is what the README says to look at."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batch_pipeline_tests.conftest import REPO_ROOT
from testbed.conversion_fixtures import docx, eml, text_pdf
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

README = (REPO_ROOT / "README.md").read_text()


def recipe(title: str) -> str:
    """The shell set-up the recipes share, then the bash block that follows a recipe's bold title."""
    shared = README.index("First, in the shell you run the recipes from")
    start = README.index(f"**{title}")
    return "\n".join(re.search(r"```bash\n(.*?)```", README[at:], re.S).group(1) for at in (shared, start))


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A checkout after `make demo`: the examples, the venv (this one) and an initialised .dagster_home."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copytree(REPO_ROOT / "examples", root / "examples")
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    home = root / ".dagster_home"
    subprocess.run([root / ".venv/bin/batch-pipeline", "init", "--config", REPO_ROOT / "dagster.yaml"],
                   env={**environment(tmp_path), "DAGSTER_HOME": str(home)}, check=True, capture_output=True)  # fmt: skip
    return root


def environment(tmp_path: Path) -> dict[str, str]:
    """A user's shell: their own HOME, none of this test run's settings."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_PIPELINE_", "DAGSTER_", "OPENAI_"))}
    return {**keep, "HOME": str(tmp_path / "home")}


@pytest.fixture
def contracts(tmp_path) -> Path:
    """~/contracts: a PDF, a Word file, an e-mail, a web page and markdown, one in a sub-folder."""
    folder = tmp_path / "home" / "contracts"
    (folder / "2024").mkdir(parents=True)
    (folder / "lease.pdf").write_bytes(text_pdf(["Lease agreement", "Contact: jane.doe@example.com"]))
    (folder / "terms.docx").write_bytes(docx("Payment terms: 30 days.", [["party", "role"], ["ACME", "supplier"]]))
    (folder / "offer.eml").write_bytes(
        eml("sales@example.com", "<p>Our offer, call +1 202 456 1111</p>", "a.txt", b"x")
    )
    (folder / "2024" / "notes.html").write_text("<html><body><h1>Notes</h1><p>Renewal in May.</p></body></html>")
    (folder / "2024" / "summary.md").write_text("# Summary\n\nNothing sensitive here.\n")
    return folder


def run_recipe(
    block: str, checkout: Path, tmp_path: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=checkout, env={**environment(tmp_path), **(extra or {})},
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_recipe_1_the_offline_analysers_on_your_own_folder(checkout, contracts, tmp_path):
    done = run_recipe(recipe("1. With the offline analysers"), checkout, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "valid run config for document_batch_job" in done.stdout
    assert "RUN_SUCCESS" in done.stderr or "RUN_SUCCESS" in done.stdout
    # `batch-pipeline runs`: the run, its status from the instance, all five documents analysed.
    last_table_row = [line for line in done.stdout.splitlines() if line.startswith("|") and "SUCCESS" in line]
    assert len(last_table_row) == 1 and "ok 5" in last_table_row[0]
    assert list((checkout / ".dagster_home" / "batch_pipeline" / "reports").glob("*/report.html"))


def test_recipe_2_openai_on_your_own_folder(checkout, contracts, tmp_path):
    # The README's placeholder key, accepted by the loopback server standing in for OpenAI.
    with FakeOpenAIServer(Behaviour(api_key="sk-...", models=("gpt-4.1-mini",))) as openai:
        done = run_recipe(recipe("2. With OpenAI"), checkout, tmp_path, {"OPENAI_BASE_URL": openai.url})
        assert done.returncode == 0, done.stderr[-3000:]
        assert "estimated_cost_usd" in done.stdout
        assert "(the provider accepts the key and serves the model)" in done.stdout
        assert {request.model for request in openai.completions()} == {"gpt-4.1-mini"}
        assert len({request.document for request in openai.completions() if request.document}) == 5  # not the probe


def test_recipe_3_a_local_server_on_your_own_folder(checkout, contracts, tmp_path):
    # A server that checks no key (the recipe's OPENAI_API_KEY=unused), on the port the test got.
    with FakeOpenAIServer(Behaviour(api_key="unused", models=("smollm",))) as local:
        block = recipe("3. With a local").replace("http://127.0.0.1:8080/v1", local.url).replace("MODEL", "smollm")
        done = run_recipe(block, checkout, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert {request.model for request in local.completions()} == {"smollm"}
