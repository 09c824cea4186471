"""Bringing one's own analysis, as a deployment does: a definition file in the folder
BATCH_PIPELINE_ANALYSES names, a fresh code location process (what a reload starts), a run over a
folder of PDFs and markdown against the loopback server, the user's fields in results.csv and
report.html; an unchanged definition served from the cache, an edited one re-analysed; a broken one
named with its line while the others work."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
import yaml

from batch_pipeline.analysis.definition import read_definition
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.schema import analysis_definitions, batch_runs
from batch_pipeline_tests.conftest import REPO_ROOT, batch_config, dagster_execute, with_llm
from testbed.conversion_fixtures import text_pdf
from testbed.fake_openai_server import FakeOpenAIServer

EXAMPLES = REPO_ROOT / "examples" / "analyses"
BATCH_PIPELINE = str(Path(sys.executable).with_name("batch-pipeline"))
CONTRACT = [
    "MASTER SERVICES AGREEMENT between Northwind Traders Ltd and Contoso Pharmaceuticals Inc.",
    "Effective 15 January 2025. Governed by the laws of the State of New York.",
    "Either party may terminate on ninety (90) days' written notice. Renews automatically each year.",
]


@pytest.fixture
def deployment(tmp_path, shared_store_env, monkeypatch):
    """A deployment whose analyses folder holds contract_terms.yaml and a broken definition."""
    folder = tmp_path / "analyses"
    folder.mkdir()
    shutil.copy(EXAMPLES / "contract_terms.yaml", folder)
    (folder / "half_done.yaml").write_text("description: unfinished\nprompt: |\n  Read it.\n  {{ oops\nschema: {}\n")
    corpus = tmp_path / "contracts"
    corpus.mkdir()
    (corpus / "msa.pdf").write_bytes(text_pdf(CONTRACT))
    (corpus / "nda.md").write_text("# NDA\n\nBetween Acme Corp and Jane Doe, effective 2024-06-01.\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    env = {**shared_store_env, "BATCH_PIPELINE_ANALYSES": str(folder), "OPENAI_API_KEY": "sk-test-key"}
    return folder, corpus, env


def run(env: dict, tmp_path: Path, name: str, model_key: str, corpus: Path) -> subprocess.CompletedProcess:
    config = with_llm(batch_config(str(corpus), project="contracts", model_key=model_key, ai_model="gpt-test"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = dagster_execute(path, tmp_path / "home", env)
    output, _ = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def last_run(store: DocumentStore) -> str:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(batch_runs.c.run_id).order_by(batch_runs.c.created_at.desc()).limit(1))


def test_a_dropped_in_definition_runs_end_to_end_is_cached_by_content_and_a_broken_one_is_named(deployment, tmp_path):
    folder, corpus, env = deployment
    listed = subprocess.run([BATCH_PIPELINE, "models", "--format", "json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    by_origin = {item["origin"]: item for item in json.loads(listed.stdout)}
    contract = by_origin[str(folder / "contract_terms.yaml")]
    assert contract["error"] is None and contract["offline"] is False and contract["key"] == "contract_terms"
    assert contract["fields"] == {"parties": "array", "effective_date": "string", "governing_law": "string",
                                  "termination_notice_days": "integer", "auto_renewal": "boolean"}  # fmt: skip
    broken = by_origin[str(folder / "half_done.yaml")]
    assert broken["key"] == "half_done" and f"{folder / 'half_done.yaml'}:4: prompt: template error" in broken["error"]
    assert by_origin[str(REPO_ROOT / "batch_pipeline/analysis/content_compliance.yaml")]["offline"] is True

    store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
    with FakeOpenAIServer() as server:
        env = {**env, "OPENAI_BASE_URL": server.url}
        first = run(env, tmp_path, "first", "contract_terms", corpus)
        assert first.returncode == 0, first.stdout[-3000:]
        first_id = last_run(store)
        assert store.status_counts(first_id) == {"ok": 2}
        paid = len(server.completions())  # the two documents, and the response format's probe

        reports = Path(env["BATCH_PIPELINE_REPORTS_DIR"]) / first_id
        with (reports / "results.csv").open(newline="") as f:
            rows = {row["filename"]: row for row in csv.DictReader(f)}
        for field in ("parties", "effective_date", "governing_law", "termination_notice_days", "auto_renewal"):
            assert field in rows["msa.pdf"], field  # one column per field of the user's schema
        schema = read_definition(folder / "contract_terms.yaml").output_schema
        for row in rows.values():  # every stored answer fits the user's schema, as JSON Schema reads it
            jsonschema.validate(json.loads(row["result"]), schema, format_checker=jsonschema.FormatChecker())
        assert rows["msa.pdf"]["converter"].startswith("pypdfium2")
        page = (reports / "report.html").read_text()
        assert "auto_renewal: documents per value" in page and "Documents flagged" in page
        flagged = page[page.index("<h2>Flagged documents") : page.index("<h2>Failed documents")]
        for field in ("parties", "effective_date", "termination_notice_days", "governing_law"):
            assert f"<b>{field}</b>" in flagged, field  # each flagged contract with the user's fields
        results = page[page.index("<h2>Results") : page.index("<h2>Failed documents")]
        assert "<th>parties</th>" in results and "<th>termination_notice_days</th>" in results and "msa.pdf" in results
        assert "parties: items" in (reports / "summary.md").read_text()

        second = run(env, tmp_path, "second", "contract_terms", corpus)
        assert second.returncode == 0, second.stdout[-3000:]
        assert store.results(last_run(store))["cached_from_run_id"].tolist() == [first_id, first_id]

        edited = (folder / "contract_terms.yaml").read_text().replace("never guess.", "never guess; quote names.")
        (folder / "contract_terms.yaml").write_text(edited)
        third = run(env, tmp_path, "third", "contract_terms", corpus)
        assert third.returncode == 0, third.stdout[-3000:]
        third_rows = store.results(last_run(store))
        assert third_rows["cached_from_run_id"].isna().all() and (third_rows["status"] == "ok").all()
        assert len(set(store.results(first_id)["definition_digest"]) | set(third_rows["definition_digest"])) == 2
        assert len(server.completions()) == paid + 2  # the unchanged definition paid nothing

        refused = run(env, tmp_path, "broken", "half_done", corpus)
        assert refused.returncode != 0
        assert f"{folder / 'half_done.yaml'}:4: prompt: template error" in refused.stdout
        assert len(server.completions()) == paid + 2

    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(analysis_definitions)) == 2
    digest = store.results(first_id)["definition_digest"].iloc[0]
    kept = store.analysis_definition(digest)  # the first run's definition, as launched, whatever the file says now
    assert kept.digest == digest and "never guess." in kept.prompt and "quote names" not in kept.prompt
    store.close()


@pytest.mark.parametrize("name", ["invoice_fields", "support_ticket_triage"])
def test_each_other_example_runs_end_to_end_against_the_loopback_server(name, tmp_path, shared_store_env):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.md").write_text("Invoice INV-0042 from Fabrikam GmbH, 2024-11-30. Total EUR 1,250.00. 3 items.\n")
    (corpus / "b.md").write_text("My login stopped working after the update and I cannot reach the dashboard!\n")
    env = {**shared_store_env, "BATCH_PIPELINE_ANALYSES": str(EXAMPLES), "OPENAI_API_KEY": "sk-test-key"}
    with FakeOpenAIServer() as server:
        done = run({**env, "OPENAI_BASE_URL": server.url}, tmp_path, name, name, corpus)
    assert done.returncode == 0, done.stdout[-3000:]
    store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
    rows = store.results(last_run(store))
    store.close()
    schema = read_definition(EXAMPLES / f"{name}.yaml").output_schema
    assert (rows["status"] == "ok").all() and len(rows) == 2
    for result in rows["result"]:
        jsonschema.validate(json.loads(result), schema, format_checker=jsonschema.FormatChecker())
