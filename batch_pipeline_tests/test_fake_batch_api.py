"""The fake server's Files and Batch APIs (fake_batch_api.py), driven by the real openai client."""

import json
import time

import openai
import pytest

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.llm.completions import completion_request
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.response_format import ResponseFormatMode
from testbed.fake_openai_server import Behaviour, FakeOpenAIServer

KEY = "content_compliance"
TERMINAL = {"completed", "failed", "expired", "cancelled"}
LIFECYCLE = ["validating", "in_progress", "finalizing", "completed"]
# Phases for the tests that do not watch them (the defaults take 0.9 s).
FAST = {"batch_validating_seconds": 0.05, "batch_in_progress_seconds": 0.15, "batch_finalizing_seconds": 0.05}


def document(i: int) -> str:
    return (
        f"# Memo {i}\n\nPlease contact user{i}@example.com about invoice {i}.\n\nShipped on 2024-05-{i % 28 + 1:02d}."
    )


def chat_body(text: str, ai_model: str = "gpt-test") -> dict:
    """The online request's body, as the client would send it: extra_body (the response format) merged in."""
    model, mode = catalogue().get(KEY), ResponseFormatMode.json_schema
    request = completion_request(model, ai_model, build_messages(model, "", text, mode), mode, max_tokens=1024)
    body = {name: value for name, value in request.items() if name != "extra_body"}
    return {**body, **request.get("extra_body", {})}


def line(custom_id: str, body: dict, url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in lines).encode()


def documents_file(count: int) -> tuple[bytes, dict[str, str]]:
    texts = {f"doc-{i:04d}": document(i) for i in range(count)}
    return jsonl([line(custom_id, chat_body(text)) for custom_id, text in texts.items()]), texts


def client_for(server: FakeOpenAIServer, **options) -> openai.OpenAI:
    return openai.OpenAI(**{"api_key": server.behaviour.api_key, "base_url": server.url, **options})


def submit(client: openai.OpenAI, data: bytes, **metadata: str):
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata
    )


def wait(client: openai.OpenAI, batch_id: str, statuses=TERMINAL, timeout: float = 15):
    """The batch once its status is one of `statuses`, and every status seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in statuses:
            return batch, seen
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout} s"
        time.sleep(0.02)


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    return [] if file_id is None else [json.loads(raw) for raw in client.files.content(file_id).text.splitlines()]


def finish(client: openai.OpenAI, batch_id: str):
    """The ended batch, the statuses seen on the way, and its output and error lines."""
    batch, seen = wait(client, batch_id)
    return batch, seen, lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)


def test_files_upload_retrieve_content_delete_and_key():
    with FakeOpenAIServer() as server:
        client = client_for(server)
        data, _ = documents_file(2)
        uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
        assert uploaded.id.startswith("file-") and uploaded.status == "processed"
        assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == ("in.jsonl", "batch", len(data))
        assert client.files.retrieve(uploaded.id) == uploaded
        assert client.files.content(uploaded.id).content == data
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve("file-nope")
        with pytest.raises(openai.NotFoundError):
            client.files.content("file-nope")
        with pytest.raises(openai.AuthenticationError):
            client_for(server, api_key="sk-wrong").files.retrieve(uploaded.id)
        with pytest.raises(openai.AuthenticationError):
            client_for(server, api_key="sk-wrong").batches.list()
        assert client.files.delete(uploaded.id).deleted
        assert uploaded.id not in server.files


def test_a_batch_answers_every_line_like_the_online_endpoint_in_a_shuffled_order():
    phases = {"batch_validating_seconds": 0.3, "batch_in_progress_seconds": 0.8, "batch_finalizing_seconds": 0.3}
    with FakeOpenAIServer(Behaviour(cached_tokens=16, **phases)) as server:
        client = client_for(server)
        data, texts = documents_file(40)
        created = submit(client, data, run="r1", part="0")
        assert created.id.startswith("batch_") and created.status == "validating"
        assert created.request_counts.total == 0 and created.usage is None
        batch, seen, output, errors = finish(client, created.id)
        online = client.chat.completions.create(**chat_body(texts["doc-0007"]))

    assert seen == LIFECYCLE
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.metadata == {"run": "r1", "part": "0"} and batch.model == "gpt-test"
    assert batch.error_file_id is None and batch.errors is None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (40, 40, 0)
    assert errors == []
    assert sorted(item["custom_id"] for item in output) == sorted(texts)
    assert [item["custom_id"] for item in output] != sorted(texts)  # shuffled
    for item in output:
        assert item["id"].startswith("batch_req_") and item["error"] is None
        assert item["response"]["status_code"] == 200 and item["response"]["request_id"]
        completion = openai.types.chat.ChatCompletion.model_validate(item["response"]["body"])
        expected = catalogue().get(KEY).analyse_offline(texts[item["custom_id"]]).model_dump_json()
        assert completion.choices[0].message.content == expected
        assert completion.model == online.model
    usages = [item["response"]["body"]["usage"] for item in output]
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in usages)
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in usages)
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens
    assert batch.usage.input_tokens_details.cached_tokens == 40 * 16

    record = server.batches[batch.id]
    assert record.metadata == {"run": "r1", "part": "0"} and record.custom_ids == list(texts)
    assert server.batch_creations == 1
    assert {r.batch_id for r in server.completions()} == {batch.id, None}  # the lines, and the online request


def test_a_share_of_lines_is_answered_400_in_the_error_file():
    with FakeOpenAIServer(Behaviour(batch_line_error_rate=0.3, seed=3, **FAST)) as server:
        client = client_for(server)
        data, texts = documents_file(60)
        batch, _, output, errors = finish(client, submit(client, data).id)
    assert batch.status == "completed"
    assert 5 <= len(errors) <= 35 and len(output) + len(errors) == 60
    assert sorted(item["custom_id"] for item in output + errors) == sorted(texts)
    assert all(item["response"]["status_code"] == 200 for item in output)
    for item in errors:
        assert item["response"]["status_code"] == 400 and item["error"] is None
        assert item["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(output), len(errors))
    assert batch.usage.input_tokens == sum(item["response"]["body"]["usage"]["prompt_tokens"] for item in output)


@pytest.mark.parametrize(
    ("behaviour", "check"),
    [
        (Behaviour(refusal_rate=1.0, **FAST), lambda m, c: m["content"] is None and "can't help" in m["refusal"]),
        (Behaviour(length_rate=1.0, **FAST), lambda m, c: c["finish_reason"] == "length"),
        (Behaviour(malformed_rate=1.0, **FAST), lambda m, c: m["content"].endswith(' "oops')),
    ],
)
def test_batch_lines_misbehave_like_online_answers(behaviour, check):
    with FakeOpenAIServer(behaviour) as server:
        client = client_for(server)
        _, _, output, _ = finish(client, submit(client, documents_file(3)[0]).id)
    choices = [item["response"]["body"]["choices"][0] for item in output]
    assert len(choices) == 3 and all(check(choice["message"], choice) for choice in choices)


def test_an_unmerged_extra_body_is_an_unknown_argument():
    with FakeOpenAIServer(Behaviour(**FAST)) as server:
        client = client_for(server)
        model, mode = catalogue().get(KEY), ResponseFormatMode.json_schema
        request = completion_request(model, "gpt-test", build_messages(model, "", document(1), mode), mode, 1024)
        _, _, output, (item,) = finish(client, submit(client, jsonl([line("a", request)])).id)
    assert output == []
    assert item["response"]["status_code"] == 400
    assert "extra_body" in item["response"]["body"]["error"]["message"]


def test_the_first_batches_expire_with_half_their_lines_run():
    with FakeOpenAIServer(Behaviour(batch_expire_first=1)) as server:
        client = client_for(server)
        data, texts = documents_file(21)
        first, seen, output, errors = finish(client, submit(client, data).id)
        second, _ = wait(client, submit(client, data).id)
    assert seen == ["validating", "in_progress", "expired"] and first.expired_at is not None
    assert second.status == "completed"
    assert (len(output), len(errors)) == (10, 11)
    assert sorted(item["custom_id"] for item in output + errors) == sorted(texts)
    for item in errors:
        assert item["response"] is None and item["error"]["code"] == "batch_expired"
        assert item["error"]["message"] == "This request could not be executed before the completion window expired."
    assert (first.request_counts.total, first.request_counts.completed, first.request_counts.failed) == (21, 10, 11)


def test_a_cancelled_batch_keeps_the_lines_run_before():
    behaviour = Behaviour(batch_in_progress_seconds=1.5, batch_cancelling_seconds=0.3)
    with FakeOpenAIServer(behaviour) as server:
        client = client_for(server)
        data, texts = documents_file(30)
        created = submit(client, data)
        running, _ = wait(client, created.id, statuses={"in_progress"})
        while running.request_counts.completed == 0:
            running = client.batches.retrieve(created.id)
        cancelling = client.batches.cancel(created.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        assert client.batches.cancel(created.id).status == "cancelling"  # a second cancel changes nothing
        batch, seen, output, errors = finish(client, created.id)
        server.behaviour.batch_in_progress_seconds = 0.1  # for batches created from now on
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(wait(client, submit(client, data).id)[0].id)  # completed: too late
    assert seen == ["cancelling", "cancelled"] and batch.cancelled_at is not None
    assert 0 < len(output) < 30 and len(output) + len(errors) == 30
    assert sorted(item["custom_id"] for item in output + errors) == sorted(texts)
    assert all(item["error"]["code"] == "batch_cancelled" and item["response"] is None for item in errors)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(output), len(errors))


def invalid_files() -> dict[str, tuple[bytes, int | None]]:
    """Input files that break one rule each: the error code they fail with, and its line."""
    one, two, other = chat_body(document(1)), chat_body(document(2)), chat_body(document(3), "gpt-other")
    fine = [line(f"c{i}", chat_body(document(i))) for i in range(4)]
    return {
        "duplicate_custom_id": (jsonl([line("a", one), line("a", two)]), 2),
        "mismatched_model": (jsonl([line("a", one), line("b", two), line("c", other)]), 3),
        "invalid_json_line": (jsonl([line("a", one)]) + b"{not json\n" + jsonl([line("b", two)]), 2),
        "invalid_url": (jsonl([line("a", one, url="/v1/embeddings")]), 1),
        "missing_required_parameter": (jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}]), 1),
        "streaming_unsupported": (jsonl([line("a", {**one, "stream": True})]), 1),
        "model_not_found": (jsonl([line("a", {**one, "model": "gpt-nope"})]), 1),
        "too_many_requests": (jsonl(fine), None),  # batch_max_requests=3
        "empty_file": (b"", None),
    }


def test_an_invalid_input_file_fails_the_batch():
    with FakeOpenAIServer(Behaviour(batch_max_requests=3, **FAST)) as server:
        client = client_for(server)
        cases = {code: (submit(client, data), line_number) for code, (data, line_number) in invalid_files().items()}
        missing = client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
        for code, (created, line_number) in cases.items():
            batch, seen = wait(client, created.id)
            assert created.status == "validating" and seen[-1:] == ["failed"] and "in_progress" not in seen, code
            assert batch.failed_at is not None and batch.in_progress_at is None
            assert [(e.code, e.line) for e in batch.errors.data] == [(code, line_number)], batch.errors
            assert batch.errors.data[0].message and batch.output_file_id is None and batch.error_file_id is None
            assert batch.request_counts.total == 0 and batch.usage is None
        missing, _ = wait(client, missing.id)
    assert missing.status == "failed" and missing.errors.data[0].param == "file_id"


def test_invalid_create_arguments_are_rejected():
    with FakeOpenAIServer() as server:
        client = client_for(server)
        uploaded = client.files.create(file=("in.jsonl", documents_file(1)[0]), purpose="batch")
        for arguments in [
            {"endpoint": "/v1/chat/completion", "completion_window": "24h"},
            {"endpoint": "/v1/chat/completions", "completion_window": "1h"},
            {"endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {"tags": ["a"]}},
        ]:
            with pytest.raises(openai.BadRequestError):
                client.batches.create(input_file_id=uploaded.id, **arguments)
        assert server.batch_creations == 0 and not server.batches


def test_the_list_is_newest_first_and_pages_to_a_batch_by_its_metadata():
    with FakeOpenAIServer() as server:
        client = client_for(server)
        data, _ = documents_file(2)
        ids = [submit(client, data, run=f"r{i}").id for i in range(7)]
        first_page = client.batches.list(limit=2)
        listed = list(client.batches.list(limit=2))  # the client follows `after` through every page
        nope = client.batches.list(after="batch_nope")
    assert [b.id for b in first_page.data] == ids[::-1][:2] and first_page.has_more
    assert [b.id for b in listed] == ids[::-1]
    assert next(b for b in listed if b.metadata == {"run": "r2"}).id == ids[2]
    assert nope.data == [] and not nope.has_more


def test_a_slow_create_times_out_in_the_client_yet_the_batch_exists():
    behaviour = Behaviour(batch_create_delay_seconds=3.0, batch_create_delay_first=1, **FAST)
    with FakeOpenAIServer(behaviour) as server:
        client = client_for(server, timeout=0.5, max_retries=0)
        data, _ = documents_file(4)
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            submit(client, data, run="slow")
        assert time.monotonic() - started < 2.5
        assert server.batch_creations == 1
        (found,) = [b for b in client.batches.list() if b.metadata == {"run": "slow"}]
        assert server.batches[found.id].metadata == {"run": "slow"}
        batch, _ = wait(client, found.id)
        assert batch.status == "completed" and batch.request_counts.completed == 4
        assert submit(client, data, run="fast").status == "validating"  # only the first create was slow
        assert server.batch_creations == 2
