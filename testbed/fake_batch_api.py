"""The OpenAI Files and Batch APIs of the fake server (fake_openai_server.py), in memory.

A batch follows the clock, in phases the Behaviour times: `validating`, then `failed` (errors.data
says why) or `in_progress`, while its lines run evenly in a shuffled order, then `finalizing` and
`completed`. The first Behaviour.batch_expire_first batches end `expired` after in_progress with half
their lines run; a cancelled one is `cancelling`, then `cancelled`. Nothing runs in the background:
a batch is brought up to date whenever a request reads it.

A line is answered as /v1/chat/completions would answer its body (FakeOpenAIServer.answer). As at
OpenAI, the output file holds the lines answered 200; the error file those answered with an HTTP
error (`response.status_code` 400, `error` null) and those never run (`response` null, `error`
batch_expired or batch_cancelled). Both are in the order the lines ran.

Tests drive interleavings with gates (BatchAPI.hold_next): the next upload, or the next create
before the batch exists or after it exists and is listed, waits in the server until the test opens
the gate.
"""

import asyncio
import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testbed.fake_openai_errors import error_body, error_response


class Server(Protocol):
    """What the Batch API takes from the fake server (FakeOpenAIServer) around it."""

    behaviour: Any
    _lock: threading.Lock
    _random: random.Random

    def _authorised(self, request: Request) -> bool: ...

    def _chance(self, rate: float) -> bool: ...

    def answer(self, body: dict, batch_id: str | None = None) -> tuple[int, dict]: ...


ENDPOINT = "/v1/chat/completions"  # the one batch endpoint served (OpenAI also has /v1/responses, ...)
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
LINE_FIELDS = ("custom_id", "method", "url", "body")
PHASES = ("validating", "in_progress", "finalizing", "cancelling")
STAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")
NOT_RUN = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request could not be executed because the batch was cancelled."),
}


HOLD_POINTS = ("upload", "create_received", "create_answered")


class Gate:
    """Holds one request in the server until the test opens it; `reached` is set when it arrives."""

    def __init__(self, timeout: float = 60.0):
        self.reached = threading.Event()
        self._opened = threading.Event()
        self.timeout = timeout

    def open(self) -> None:
        self._opened.set()

    async def passed(self) -> None:
        self.reached.set()
        await asyncio.to_thread(self._opened.wait, self.timeout)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_json(self) -> dict:
        fields = {name: getattr(self, name) for name in ("id", "filename", "purpose", "created_at")}
        return {**fields, "object": "file", "bytes": len(self.data), "status": "processed"}


@dataclass
class BatchRecord:
    """A batch as the server keeps it: `requests` are the input lines, `answered` the output lines so far."""

    id: str
    seq: int  # the how-many-th creation, from 0
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created: float
    phases: tuple[float, ...]  # seconds validating, in_progress, finalizing, cancelling
    requests: list[dict]
    errors: list[dict]  # why validation fails it; empty when it does not
    expires: bool
    order: list[int]  # indexes of `requests` in the order they run
    cancel_at: float | None = None
    answered: list[dict] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict | None = None
    finished: bool = False

    @property
    def custom_ids(self) -> list[str]:
        return [request["custom_id"] for request in self.requests]

    @property
    def model(self) -> str | None:
        return None if self.errors or not self.requests else self.requests[0]["body"]["model"]

    def stamps(self, now: float) -> dict[str, float]:
        """When each phase the batch has reached by `now` began."""
        validating, in_progress, finalizing, cancelling = self.phases
        started = self.created + validating
        ended = started + in_progress
        if self.errors:
            events = {"failed_at": started}
        elif self.expires:
            events = {"in_progress_at": started, "expired_at": ended}
        else:
            events = {"in_progress_at": started, "finalizing_at": ended, "completed_at": ended + finalizing}
        stop = math.inf if self.cancel_at is None else self.cancel_at
        stamps = {name: at for name, at in events.items() if at <= min(now, stop)}
        if self.cancel_at is not None:
            stamps["cancelling_at"] = self.cancel_at
            if now >= self.cancel_at + cancelling:
                stamps["cancelled_at"] = self.cancel_at + cancelling
        return stamps

    def status(self, now: float) -> str:
        stamps = self.stamps(now)
        for status in ("cancelled", "cancelling", "failed", "expired", "completed", "finalizing", "in_progress"):
            if f"{status}_at" in stamps:
                return status
        return "validating"

    def due(self, now: float) -> int:
        """How many lines have run by `now`: evenly over in_progress, all of them (half if it expires) after."""
        validating, in_progress = self.phases[:2]
        target = 0 if self.errors else len(self.requests) // 2 if self.expires else len(self.requests)
        elapsed = (now if self.cancel_at is None else min(now, self.cancel_at)) - self.created - validating
        if elapsed < 0:
            return 0
        return target if elapsed >= in_progress else int(target * elapsed / in_progress)


def parse_input(data: bytes, models: tuple[str, ...], max_requests: int) -> tuple[list[dict], list[dict]]:
    """The input file's request lines, and what fails its validation as OpenAI reports it (1-based lines)."""
    requests: list[dict] = []
    errors: list[dict] = []
    seen: set[str] = set()
    model = None

    def error(code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        errors.append({"code": code, "line": line, "message": message, "param": param})

    numbered = [(n, text) for n, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1) if text.strip()]
    if not numbered:
        error("empty_file", "The batch input file is empty.")
    if len(numbered) > max_requests:
        error("too_many_requests", f"The input file has {len(numbered):,} requests; a batch takes {max_requests:,}.")
        return [], errors
    for n, text in numbered:
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            error("invalid_json_line", "This line is not parseable as valid JSON.", n)
            continue
        if missing := next((name for name in LINE_FIELDS if name not in line), None):
            error("missing_required_parameter", f"Missing required parameter: '{missing}'.", n, missing)
            continue
        custom_id, body = line["custom_id"], line["body"]
        if not isinstance(custom_id, str) or not isinstance(body, dict):
            error("invalid_type", "custom_id must be a string and body an object.", n)
        elif custom_id in seen:
            message = "The custom_id for this request is a duplicate of another request."
            error("duplicate_custom_id", message, n, "custom_id")
        elif line["method"] != "POST":
            error("invalid_value", f"Invalid value: '{line['method']}'. Supported values are: 'POST'.", n, "method")
        elif line["url"] != ENDPOINT:
            error("invalid_url", "The URL provided for this request does not match the batch endpoint.", n, "url")
        elif body.get("stream"):
            error("streaming_unsupported", "Streaming is not supported in the Batch API.", n, "body.stream")
        elif missing := next((name for name in ("model", "messages") if name not in body), None):
            error("invalid_request", f"{missing.capitalize()} parameter is required.", n, f"body.{missing}")
        elif body["model"] not in models:
            error("model_not_found", f"The provided model '{body['model']}' is not supported.", n, "body.model")
        elif model not in (None, body["model"]):
            message = f"The provided model '{body['model']}' does not match the batch's other requests' '{model}'."
            error("mismatched_model", message, n, "body.model")
        else:
            model = body["model"]
        if isinstance(custom_id, str):
            seen.add(custom_id)
        requests.append(line)
    return requests, errors


def _usage(lines: list[dict]) -> dict:
    usages = [line["response"]["body"]["usage"] for line in lines]
    tokens = {kind: sum(u[f"{kind}_tokens"] for u in usages) for kind in ("prompt", "completion")}
    cached = sum(u.get("prompt_tokens_details", {}).get("cached_tokens", 0) for u in usages)
    return {
        "input_tokens": tokens["prompt"],
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": tokens["completion"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens["prompt"] + tokens["completion"],
    }


def _invalid_create(body: dict) -> JSONResponse | None:
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not body.get(name):
            message = f"Missing required parameter: '{name}'."
            return error_response(400, message, code="missing_required_parameter", param=name)
    for name, supported in (("endpoint", ENDPOINT), ("completion_window", "24h")):
        if body[name] != supported:
            message = f"Invalid value: '{body[name]}'. Supported values are: '{supported}'."
            return error_response(400, message, code="invalid_value", param=name)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 16 or not all(isinstance(v, str) for v in metadata.values()):
        message = "Invalid 'metadata': expected at most 16 pairs whose values are strings."
        return error_response(400, message, code="invalid_type", param="metadata")
    return None


class BatchAPI:
    """The /v1/files and /v1/batches routes of one FakeOpenAIServer, and their state."""

    def __init__(self, server: Server):
        self.server = server
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.creations = 0
        self.list_calls = 0
        self._holds: dict[str, Gate] = {}
        self._gates: list[Gate] = []

    def hold_next(self, point: str) -> Gate:
        """A gate the next request at `point` (one of HOLD_POINTS) waits at."""
        assert point in HOLD_POINTS, point
        gate = self._holds[point] = Gate()
        self._gates.append(gate)
        return gate

    async def _pass(self, point: str) -> None:
        if gate := self._holds.pop(point, None):
            await gate.passed()

    def open_gates(self) -> None:
        for gate in self._gates:
            gate.open()

    def routes(self) -> list[Route]:
        def authorised(endpoint):
            async def checked(request: Request) -> Response:
                if not self.server._authorised(request):
                    return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
                return await endpoint(request)

            return checked

        return [
            Route(path, authorised(endpoint), methods=methods)
            for path, endpoint, methods in (
                ("/v1/files", self.upload_file, ["POST"]),
                ("/v1/files/{file_id}", self.get_file, ["GET", "DELETE"]),
                ("/v1/files/{file_id}/content", self.file_content, ["GET"]),
                ("/v1/batches", self.list_batches, ["GET"]),
                ("/v1/batches", self.create_batch, ["POST"]),
                ("/v1/batches/{batch_id}", self.get_batch, ["GET"]),
                ("/v1/batches/{batch_id}/cancel", self.cancel_batch, ["POST"]),
            )
        ]

    def _store(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(_new_id("file-"), filename, purpose, data)
        self.files[stored.id] = stored
        return stored

    # --- files ---------------------------------------------------------------------------
    async def upload_file(self, request: Request) -> JSONResponse:
        await self._pass("upload")
        async with request.form() as form:
            upload, purpose = form.get("file"), form.get("purpose")
            if upload is None or isinstance(upload, str):
                return error_response(400, "Missing required parameter: 'file'.", param="file")
            if purpose not in PURPOSES:
                message = f"Invalid value for 'purpose': {purpose!r}. Supported values are: {', '.join(PURPOSES)}."
                return error_response(400, message, code="invalid_value", param="purpose")
            stored = self._store(upload.filename or "upload.jsonl", purpose, await upload.read())
        return JSONResponse(stored.to_json())

    async def get_file(self, request: Request) -> Response:
        stored = self.files.get(file_id := request.path_params["file_id"])
        if stored is None:
            return error_response(404, f"No such File object: {file_id}", param="id")
        if request.method == "DELETE":
            del self.files[file_id]
            return JSONResponse({"id": file_id, "object": "file", "deleted": True})
        return JSONResponse(stored.to_json())

    async def file_content(self, request: Request) -> Response:
        stored = self.files.get(file_id := request.path_params["file_id"])
        if stored is None:
            return error_response(404, f"No such File object: {file_id}", param="id")
        return Response(stored.data, media_type="application/octet-stream")

    # --- batches -------------------------------------------------------------------------
    async def create_batch(self, request: Request) -> JSONResponse:
        body = await request.json()
        if invalid := _invalid_create(body):
            return invalid
        await self._pass("create_received")  # the request is in flight; no batch exists yet
        behaviour, file_id = self.server.behaviour, body["input_file_id"]
        if stored := self.files.get(file_id):
            requests, errors = parse_input(stored.data, behaviour.models, behaviour.batch_max_requests)
        else:
            message = f"Cannot find file {file_id}, or organization does not have access to it."
            requests, errors = [], [{"code": "invalid_request", "line": None, "message": message, "param": "file_id"}]
        order = list(range(len(requests)))
        with self.server._lock:
            self.server._random.shuffle(order)
        seq, self.creations = self.creations, self.creations + 1
        record = BatchRecord(
            id=_new_id("batch_"),
            seq=seq,
            input_file_id=file_id,
            completion_window=body["completion_window"],
            metadata=body.get("metadata"),
            created=time.time(),
            phases=tuple(getattr(behaviour, f"batch_{phase}_seconds") for phase in PHASES),
            requests=requests,
            errors=errors,
            expires=seq < behaviour.batch_expire_first,
            order=order,
        )
        self.batches[record.id] = record
        await self._pass("create_answered")  # the batch exists and is listed; the client has no answer yet
        slow = behaviour.batch_create_delay_first
        if behaviour.batch_create_delay_seconds and (slow is None or seq < slow):
            await asyncio.sleep(behaviour.batch_create_delay_seconds)  # the batch exists and is listed meanwhile
        return JSONResponse(self.view(record))

    async def get_batch(self, request: Request) -> JSONResponse:
        if (record := self.batches.get(batch_id := request.path_params["batch_id"])) is None:
            return error_response(404, f"No batch found with id '{batch_id}'.")
        return JSONResponse(self.view(record))

    async def list_batches(self, request: Request) -> JSONResponse:
        """Newest first, `limit` (1-100, default 20) at a time, after the batch `after`."""
        self.list_calls += 1
        limit = min(max(int(request.query_params.get("limit", 20)), 1), 100)
        records = sorted(self.batches.values(), key=lambda r: r.seq, reverse=True)
        if after := request.query_params.get("after"):
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else []
        data = [self.view(r) for r in records[:limit]]
        if not self.server.behaviour.batch_list_metadata:
            data = [{**batch, "metadata": None} for batch in data]
        first_id, last_id = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        page = {"object": "list", "data": data, "first_id": first_id, "last_id": last_id}
        return JSONResponse({**page, "has_more": len(records) > limit})

    async def cancel_batch(self, request: Request) -> JSONResponse:
        if (record := self.batches.get(batch_id := request.path_params["batch_id"])) is None:
            return error_response(404, f"No batch found with id '{batch_id}'.")
        now = time.time()
        if (status := record.status(now)) in ("completed", "failed", "expired"):
            return error_response(409, f"Cannot cancel a batch with status '{status}'.")
        if record.cancel_at is None:
            self._advance(record, now)
            record.cancel_at = now
        return JSONResponse(self.view(record))

    # --- running lines -------------------------------------------------------------------
    def view(self, record: BatchRecord) -> dict:
        """The batch object as OpenAI returns it, the record brought up to date first."""
        now = time.time()
        self._advance(record, now)
        if (status := record.status(now)) in ("completed", "expired", "cancelled") and not record.finished:
            self._finish(record, status)
        stamps = record.stamps(now)
        succeeded = sum(1 for line in record.answered if line["response"]["status_code"] == 200)
        total = 0 if status in ("validating", "failed") else len(record.requests)
        failed = (total if record.finished else len(record.answered)) - succeeded
        return {
            "id": record.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "model": record.model,
            "errors": {"object": "list", "data": record.errors} if status == "failed" else None,
            "input_file_id": record.input_file_id,
            "completion_window": record.completion_window,
            "status": status,
            "output_file_id": record.output_file_id,
            "error_file_id": record.error_file_id,
            "created_at": int(record.created),
            "expires_at": int(record.created) + 24 * 3600,
            **{name: int(stamps[name]) if name in stamps else None for name in STAMPS},
            "request_counts": {"total": total, "completed": succeeded, "failed": failed},
            "metadata": record.metadata,
            "usage": record.usage,
        }

    def _advance(self, record: BatchRecord, now: float) -> None:
        for index in record.order[len(record.answered) : record.due(now)]:
            record.answered.append(self._run_line(record.requests[index], record.id))

    def _run_line(self, request: dict, batch_id: str) -> dict:
        if self.server._chance(self.server.behaviour.batch_line_error_rate):
            message = "This model's maximum context length is 128000 tokens. Please reduce the length of the messages."
            status, body = 400, error_body(message, code="context_length_exceeded", param="messages")
        else:
            status, body = self.server.answer(request["body"], batch_id=batch_id)
        response = {"status_code": status, "request_id": uuid.uuid4().hex, "body": body}
        return {"id": _new_id("batch_req_"), "custom_id": request["custom_id"], "response": response, "error": None}

    def _finish(self, record: BatchRecord, status: str) -> None:
        """Write the output and error files of a batch that has ended."""
        output = [line for line in record.answered if line["response"]["status_code"] == 200]
        errors = [line for line in record.answered if line["response"]["status_code"] != 200]
        if status in NOT_RUN:  # the lines it never ran
            code, message = NOT_RUN[status]
            for index in record.order[len(record.answered) :]:
                custom_id, error = record.requests[index]["custom_id"], {"code": code, "message": message}
                errors.append({"id": _new_id("batch_req_"), "custom_id": custom_id, "response": None, "error": error})
        if output:
            record.output_file_id = self._store(f"{record.id}_output.jsonl", "batch_output", _jsonl(output)).id
        if errors:
            record.error_file_id = self._store(f"{record.id}_error.jsonl", "batch_output", _jsonl(errors)).id
        record.usage = _usage(output)
        record.finished = True
