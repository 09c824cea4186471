"""llm_api: batch end to end: the real job and openai client against the loopback Batch API."""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.cli.main import main
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.provider_batches import batches_of_run
from batch_pipeline_tests.conftest import (
    BATCH_PIPELINE,
    DAGSTER,
    REPO_ROOT,
    batch_config,
    llm_run,
    rows_of,
    with_llm,
    write_corpus,
)
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

COMPLIANCE = catalogue().get("content_compliance")
FAST_POLLS = {"batch_poll_max_seconds": 0.3}


def batch_run(instance, server, corpus, llm_options=None, **options):
    return llm_run(
        instance, server, corpus, llm_options={**FAST_POLLS, **(llm_options or {})}, llm_api="batch", **options
    )


def online_document_requests(server):
    return [r for r in server.requests if r.document and r.batch_id is None]


def test_a_batch_run_maps_every_answer_to_its_document_and_never_sends_a_cached_one(
    pipeline_home, instance, key, tmp_path, capsys
):
    corpus = write_corpus(tmp_path / "corpus", 30)
    with FakeOpenAIServer(Behaviour()) as server:
        first = batch_run(instance, server, corpus)
        write_corpus(corpus, 36)  # six more documents, the first thirty unchanged
        second = batch_run(instance, server, corpus)
    assert first.success and second.success
    rows = rows_of(first.run_id)
    assert len(rows) == 30 and (rows["status"] == "ok").all() and (rows["llm_api"] == "batch").all()
    for filename, row in rows.iterrows():
        expected = COMPLIANCE.analyse_offline((corpus / filename).read_text()).model_dump()
        assert json.loads(row["result"]) == expected, filename  # the answer of this document's own line
    assert (rows["input_tokens"] > 0).all() and rows["request_id"].notna().all()
    assert not online_document_requests(server), "a document went online in batch mode"

    batches = list(server.batches.values())
    assert server.batch_creations == 2
    assert len(batches[0].custom_ids) == 30 and len(batches[1].custom_ids) == 6  # cached ones never sent
    again = rows_of(second.run_id)
    assert (again["status"] == "ok").all() and again["cached_from_run_id"].notna().sum() == 30

    for stored in server.files.values():  # input files, output and error files
        assert key.encode() not in stored.data
    assert all(key not in json.dumps(batch.metadata) for batch in batches)

    capsys.readouterr()
    assert main(["status", first.run_id]) == 0
    shown = capsys.readouterr().out
    assert f"batch: {batches[0].id} completed" in shown and "documents: 30" in shown


def test_lines_the_provider_refused_end_request_error_with_its_message(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 40)
    with FakeOpenAIServer(Behaviour(batch_line_error_rate=0.25)) as server:
        result = batch_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    refused = rows[rows["status"] == "request_error"]
    assert 3 <= len(refused) <= 20 and set(rows["status"]) == {"ok", "request_error"}
    assert refused["error"].str.startswith("HTTP 400 from the Batch API: ").all()


def test_an_expired_batch_keeps_its_answers_and_sends_only_the_rest_again(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 20)
    with FakeOpenAIServer(Behaviour(batch_expire_first=1)) as server:
        result = batch_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert (rows["status"] == "ok").all()
    expired, resent = list(server.batches.values())
    assert expired.status(time.time()) == "expired" and server.batch_creations == 2
    answered = {line["custom_id"] for line in expired.answered}
    assert len(answered) == 10 and set(resent.custom_ids) == set(expired.custom_ids) - answered


def test_documents_still_unanswered_after_the_resubmissions_end_batch_expired(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 10)
    with FakeOpenAIServer(Behaviour(batch_expire_first=2)) as server:
        result = batch_run(instance, server, corpus, llm_options={"batch_resubmissions": 1})
    rows = rows_of(result.run_id)
    assert result.success and server.batch_creations == 2
    counts = rows["status"].value_counts().to_dict()
    assert counts == {"ok": 5 + 2, "batch_expired": 3}
    reasons = rows[rows["status"] == "batch_expired"]["error"]
    assert reasons.str.contains("left it unanswered \\(expired\\) in 2 batches").all()


def test_a_batch_that_fails_validation_fails_its_documents_with_the_providers_error(
    pipeline_home, instance, key, tmp_path
):
    corpus = write_corpus(tmp_path / "corpus", 8)
    with FakeOpenAIServer(Behaviour(batch_max_requests=5)) as server:
        result = batch_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    assert result.success and (rows["status"] == "request_error").all()
    assert rows["error"].str.startswith("the Batch API refused batch batch_").all()
    assert server.batch_creations == 1


def test_a_timed_out_create_is_found_by_its_key_instead_of_creating_a_second_batch(
    pipeline_home, instance, key, tmp_path
):
    corpus = write_corpus(tmp_path / "corpus", 6)
    behaviour = Behaviour(batch_create_delay_seconds=4, batch_create_delay_first=1)
    with FakeOpenAIServer(behaviour) as server:
        result = batch_run(instance, server, corpus, llm_options={"timeout_seconds": 1})
    assert result.success and (rows_of(result.run_id)["status"] == "ok").all()
    assert server.batch_creations == 1
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("created by an attempt that did not hear back" in message for message in logged)


@pytest.fixture
def dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def test_a_run_killed_while_its_batch_is_in_progress_is_finished_by_resume_without_a_second_batch(
    tmp_path, shared_store_env, dagster_home
):
    corpus = write_corpus(tmp_path / "corpus", 12)
    env = {**shared_store_env, "OPENAI_API_KEY": "sk-test-key", "DAGSTER_HOME": str(dagster_home)}
    store = DocumentStore(env["BATCH_PIPELINE_DATABASE_URL"])
    store.create_schema()
    with FakeOpenAIServer(Behaviour(batch_in_progress_seconds=6)) as server:
        env["OPENAI_BASE_URL"] = server.url
        config = with_llm(batch_config(str(corpus), ai_model="gpt-test", llm_api="batch"), **FAST_POLLS)
        config_path = tmp_path / "batch.yaml"
        config_path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [DAGSTER, "job", "execute", "-m", "batch_pipeline.definitions", "-j", "document_batch_job",
             "-c", str(config_path)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _in_progress(server):
            time.sleep(0.1)
        assert server.batch_creations == 1, "the run did not get as far as creating its batch"
        time.sleep(0.5)  # polling
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        (killed_run,) = _run_ids(store)
        assert store.status_counts(killed_run) == {"pending": 12}

        resumed = subprocess.run(
            [BATCH_PIPELINE, "resume", killed_run], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        new_run = resumed.stdout.split("resumed_as: ")[1].split()[0]
    rows = store.results(new_run)
    assert len(rows) == 12 and (rows["status"] == "ok").all() and (rows["llm_api"] == "batch").all()
    assert server.batch_creations == 1, "the resumed run paid for a second batch"
    assert not online_document_requests(server)
    (batch,) = batches_of_run(store, killed_run)
    assert batch.state == "collected" and batch.batch_id == next(iter(server.batches))
    assert batches_of_run(store, new_run) == [batch]  # adopted: `status` shows it for the resumed run too
    store.close()


def _in_progress(server: FakeOpenAIServer) -> bool:
    return any(batch.status(time.time()) == "in_progress" for batch in server.batches.values())


def _run_ids(store: DocumentStore) -> set[str]:
    import sqlalchemy as sa

    from batch_pipeline.store.schema import batch_runs

    with store.engine.connect() as conn:
        return set(conn.scalars(sa.select(batch_runs.c.run_id)))


def test_a_garbled_batch_answer_is_repaired_online(pipeline_home, instance, key, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 20)
    with FakeOpenAIServer(Behaviour(malformed_rate=0.3)) as server:
        result = batch_run(instance, server, corpus)
    rows = rows_of(result.run_id)
    repairs = [r for r in server.requests if r.is_repair]
    assert repairs and all(r.batch_id is None for r in repairs), "repairs go online"
    assert (rows["llm_api"] == "batch").all() and set(rows["status"]) <= {"ok", "invalid_output"}
    assert (rows["attempts"] >= 2).sum() == len({r.document for r in repairs})
    repaired = rows[rows["attempts"] >= 2]
    assert (repaired["status"] == "ok").any()  # a repair that worked
    given_up = rows[rows["status"] == "invalid_output"]
    assert (given_up["attempts"] == 3).all() and given_up["raw_output"].notna().all()  # the batch answer + 2 repairs
