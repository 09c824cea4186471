"""The Batch API's files: one JSONL request line per document in, output and error lines back
(in any order, joined on ``custom_id``)."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS_PER_BATCH = 50_000
MAX_BYTES_PER_BATCH = 200 * 1024 * 1024
UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})


def request_line(custom_id: str, body: dict) -> bytes:
    """One input line: the online request's body, as the client would send it."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def split_lines(
    lines: list[tuple[str, bytes]], max_requests: int = MAX_REQUESTS_PER_BATCH, max_bytes: int = MAX_BYTES_PER_BATCH
) -> Iterator[list[tuple[str, bytes]]]:
    """(custom_id, line) pairs in input files within the Batch API's per-batch limits."""
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if chunk and (len(chunk) >= max_requests or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((custom_id, line))
        size += len(line)
    if chunk:
        yield chunk


@dataclass
class LineResult:
    """What the provider did with one request line."""

    status_code: int | None  # None: no response (see error_code)
    body: dict | None
    request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def unfinished(self) -> bool:
        """Not executed before the batch expired or was cancelled: may be sent again."""
        return self.error_code in UNFINISHED_CODES

    def problem(self) -> str:
        """Why this line has no usable answer, as the provider put it."""
        if self.status_code is None:
            return f"the Batch API did not execute it: {self.error_code}: {self.error_message}"[:1000]
        error = (self.body or {}).get("error") or {}
        message = error.get("message") if isinstance(error, dict) else error
        return f"HTTP {self.status_code} from the Batch API: {message or self.body}"[:1000]


def parse_results(*files: str) -> dict[str, LineResult]:
    """The output and error files' lines by custom_id."""
    results: dict[str, LineResult] = {}
    for text in files:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            response, error = line.get("response"), line.get("error")
            if response:
                results[line["custom_id"]] = LineResult(
                    response.get("status_code"), response.get("body"), response.get("request_id")
                )
            else:
                error = error or {}
                results[line["custom_id"]] = LineResult(None, None, None, error.get("code"), error.get("message"))
    return results
