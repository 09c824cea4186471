import json

from batch_pipeline.llm.batch_lines import ENDPOINT, parse_results, request_line, split_lines
from batch_pipeline.llm.completions import sent_body


def test_a_request_line_carries_the_body_the_client_would_send_online():
    request = {"model": "gpt-test", "messages": [], "max_tokens": 5,
               "extra_body": {"messages": [{"role": "user", "content": "é"}], "response_format": {"type": "json_object"}}}  # fmt: skip
    line = json.loads(request_line("doc-1", sent_body(request)))
    assert line == {
        "custom_id": "doc-1",
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": "gpt-test", "messages": [{"role": "user", "content": "é"}], "max_tokens": 5,
                 "response_format": {"type": "json_object"}},
    }  # fmt: skip


def test_input_files_are_split_at_the_request_and_byte_limits():
    lines = [(f"d{i}", b"x" * 10 + b"\n") for i in range(25)]
    assert [len(chunk) for chunk in split_lines(lines, max_requests=10)] == [10, 10, 5]
    assert [len(chunk) for chunk in split_lines(lines, max_bytes=55)] == [5, 5, 5, 5, 5]
    assert [c for chunk in split_lines(lines, max_requests=7) for c, _ in chunk] == [c for c, _ in lines]


def test_output_and_error_lines_are_joined_on_custom_id_whatever_their_order():
    output = "\n".join(json.dumps(line) for line in [
        {"id": "r2", "custom_id": "b", "response": {"status_code": 400, "request_id": "q2",
         "body": {"error": {"message": "Invalid 'messages'"}}}, "error": None},
        {"id": "r1", "custom_id": "a", "response": {"status_code": 200, "request_id": "q1", "body": {"id": "c1"}},
         "error": None},
    ])  # fmt: skip
    errors = json.dumps({"id": "r3", "custom_id": "c", "response": None,
                         "error": {"code": "batch_expired", "message": "not executed in time"}})  # fmt: skip
    results = parse_results(output, errors)
    assert results["a"].status_code == 200 and results["a"].request_id == "q1" and not results["a"].unfinished
    assert results["b"].problem() == "HTTP 400 from the Batch API: Invalid 'messages'"
    assert results["c"].unfinished and "batch_expired" in results["c"].problem()
    assert set(results) == {"a", "b", "c"}
