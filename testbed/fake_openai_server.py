"""An OpenAI-compatible server on 127.0.0.1 for tests: /v1/models, /v1/models/{id}, /v1/chat/completions,
and the Files and Batch APIs (/v1/files, /v1/batches: fake_batch_api.py).

It answers with the offline analyser's result for the document it was sent (an analysis without one:
a value built from the requested schema), so answers fit the requested schema, reports usage, checks the bearer key, and can be told to misbehave: latency,
RPM/TPM limits with 429 + Retry-After, 500s, malformed JSON, refusals, length cut-offs, hangs,
and rejecting response formats it "does not support" (like llama.cpp's server rejects json_schema).
Batches run on a clock the Behaviour sets (seconds, not hours); they can expire, be cancelled, have
lines answered HTTP 400, and be slow to create.
"""

import asyncio
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, fields

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from batch_pipeline.analysis.registry import catalogue
from testbed.fake_batch_api import BatchAPI
from testbed.fake_openai_errors import error_body, error_response
from testbed.schema_answers import answer_for_schema

DOCUMENT_RE = re.compile(r"<document>\n(.*)\n</document>", re.S)
ALL_FORMATS = {"json_schema", "json_object_schema", "json_object", "none"}


@dataclass
class Behaviour:
    api_key: str = "sk-test-key"
    models: tuple[str, ...] = ("gpt-test", "gpt-other")
    latency: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    announce_limits: bool = False  # x-ratelimit-* headers on every answer, as OpenAI sends them
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    refusal_rate: float = 0.0
    length_rate: float = 0.0
    hang_rate: float = 0.0
    hang_first: int = 0  # the first N chat completions hang (no answer), whatever hang_rate says
    hang_seconds: float = 3600.0
    supported_formats: set[str] = field(default_factory=lambda: set(ALL_FORMATS))
    format_rejection_status: int = 400  # llama.cpp's Python server answers 500
    has_model_route: bool = True  # llama.cpp's server has no /v1/models/{id}
    cached_tokens: int = 0
    extra_completion_tokens: int = 0  # a verbose model: each answer bills this many more output tokens
    honours_max_tokens: bool = True  # False: bills output past the request's max_tokens (a broken provider)
    seed: int = 7
    # The Batch API: how long each phase lasts, and what goes wrong.
    batch_validating_seconds: float = 0.2
    batch_in_progress_seconds: float = 0.5  # lines are run evenly over it, in a shuffled order
    batch_finalizing_seconds: float = 0.2
    batch_cancelling_seconds: float = 0.2
    batch_line_error_rate: float = 0.0  # lines answered HTTP 400 (they go to the error file, as at OpenAI)
    batch_expire_first: int = 0  # the first N batches created expire after in_progress, half their lines run
    batch_create_delay_seconds: float = 0.0  # a create is answered this late; the batch exists (and is listed) at once
    batch_create_delay_first: int | None = None  # only the first N creates are slow; None: every one
    batch_max_requests: int = 50_000
    batch_list_metadata: bool = True  # False: batches.list leaves each batch's metadata out, as some servers do


@dataclass
class LoggedRequest:
    at: float
    model: str
    system: str
    document: str | None
    response_format: str
    is_repair: bool
    status: int
    batch_id: str | None = None  # the batch that carried it; None for an online request


@dataclass
class ChatCall:
    """What the server reads from a chat-completion request body."""

    body: dict
    model: str
    system: str
    document: str | None
    response_format: str  # its kind: json_schema, json_object_schema, json_object or none
    is_repair: bool
    prompt_tokens: int

    @classmethod
    def of(cls, body: dict) -> "ChatCall":
        messages = body.get("messages", [])
        first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
        match = DOCUMENT_RE.search(first_user)
        return cls(
            body=body,
            model=body.get("model", ""),
            system=next((m["content"] for m in messages if m["role"] == "system"), ""),
            document=match.group(1).replace("<\\/document>", "</document>") if match else None,
            response_format=_format_kind(body.get("response_format")),
            is_repair=any(m["role"] == "assistant" for m in messages),
            prompt_tokens=sum(len(m["content"] or "") for m in messages) // 4 + 1,
        )


class TokenBucket:
    """Per-second quantised limit, the way large providers enforce per-minute limits."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.rate = per_minute / 60
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, amount: float) -> float:
        """0 when taken, else the seconds until it could be."""
        self._refill()
        amount = min(amount, self.capacity)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        """What OpenAI announces: the per-minute limit, what is left of it, and when it is full again."""
        self._refill()
        remaining = int(self.per_minute - (self.capacity - self.level))
        reset_ms = int((self.capacity - self.level) / self.rate * 1000)
        return {
            f"x-ratelimit-limit-{kind}": str(self.per_minute),
            f"x-ratelimit-remaining-{kind}": str(max(remaining, 0)),
            f"x-ratelimit-reset-{kind}": f"{reset_ms}ms",
        }


def _format_kind(response_format: dict | None) -> str:
    if not response_format:
        return "none"
    if response_format.get("type") == "json_schema":
        return "json_schema"
    if response_format.get("type") == "json_object":
        return "json_object_schema" if "schema" in response_format else "json_object"
    return str(response_format.get("type"))


class FakeOpenAIServer:
    def __init__(self, behaviour: Behaviour | None = None):
        self.behaviour = behaviour or Behaviour()
        self.requests: list[LoggedRequest] = []
        self.received = 0  # chat completions that arrived, answered or not yet
        self.tokens_served = 0
        self._random = random.Random(self.behaviour.seed)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._chats = 0  # chat completions past the key check, the rejections and the rate limits

        self.batch_api = BatchAPI(self)
        self.batches = self.batch_api.batches  # id -> BatchRecord: metadata, custom_ids, answered lines, ...
        self.files = self.batch_api.files  # id -> StoredFile, the batches' output and error files included
        app = Starlette(
            routes=[
                Route("/v1/models", self.list_models),
                Route("/v1/models/{model_id:path}", self.get_model),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                *self.batch_api.routes(),
                Route("/_stats", self.stats),
            ]
        )
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.batch_api.open_gates()  # a request a failed test left waiting at a gate
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for requests the behaviour left hanging
        self._thread.join(10)
        self._socket.close()

    # --- helpers -------------------------------------------------------------------------
    def completions(self, status: int | None = 200) -> list[LoggedRequest]:
        """Chat completions answered, online and in batches (LoggedRequest.batch_id tells which)."""
        return [r for r in self.requests if status is None or r.status == status]

    @property
    def batch_creations(self) -> int:  # a client that timed out and retried may have created several
        return self.batch_api.creations

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.behaviour.api_key}"

    def _chance(self, rate: float) -> bool:
        with self._lock:
            return self._random.random() < rate

    def _hangs(self) -> bool:
        with self._lock:
            self._chats += 1
            first = self._chats <= self.behaviour.hang_first
        return first or self._chance(self.behaviour.hang_rate)

    def _limit(self, name: str, per_minute: int | None, amount: float) -> float:
        if not per_minute:
            return 0.0
        with self._lock:
            bucket = self._buckets.setdefault(name, TokenBucket(per_minute))
            return bucket.take(amount)

    def _limit_headers(self) -> dict[str, str]:
        if not self.behaviour.announce_limits:
            return {}
        with self._lock:
            headers = {}
            for name, kind in (("rpm", "requests"), ("tpm", "tokens")):
                if name in self._buckets:
                    headers.update(self._buckets[name].headers(kind))
            return headers

    # --- endpoints -----------------------------------------------------------------------
    async def stats(self, request: Request) -> JSONResponse:
        """Aggregates of the request log, for benchmarks driving the server from another process."""
        requests = list(self.requests)
        statuses: dict[str, int] = {}
        for r in requests:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        ok = [r for r in requests if r.status == 200]
        return JSONResponse(
            {
                "requests": len(requests),
                "statuses": statuses,
                "first": min((r.at for r in requests), default=None),
                "last": max((r.at for r in requests), default=None),
                "ok_first": min((r.at for r in ok), default=None),
                "ok_last": max((r.at for r in ok), default=None),
                "tokens": self.tokens_served,
                "batches": self.batch_creations,
            }
        )

    async def list_models(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.behaviour.models]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        model_id = request.path_params["model_id"]
        if not self.behaviour.has_model_route:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if model_id not in self.behaviour.models:
            return error_response(404, f"The model `{model_id}` does not exist.", code="model_not_found")
        return JSONResponse({"id": model_id, "object": "model", "created": 0, "owned_by": "test"})

    async def chat(self, request: Request) -> JSONResponse:
        self.received += 1
        call = ChatCall.of(await request.json())
        behaviour = self.behaviour
        if not self._authorised(request):
            self._log(call, 401)
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        if rejection := self._rejection(call):
            self._log(call, rejection[0])
            return JSONResponse(rejection[1], status_code=rejection[0])
        wait = max(self._limit("rpm", behaviour.rpm, 1), self._limit("tpm", behaviour.tpm, call.prompt_tokens))
        if wait > 0:
            self._log(call, 429)
            headers = {"retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000) + 1)}
            headers.update(self._limit_headers())
            message = "Rate limit reached. Please try again later."
            return error_response(429, message, headers, code="rate_limit_exceeded")
        if self._hangs():
            self._log(call, 0)
            await asyncio.sleep(behaviour.hang_seconds)
        if behaviour.latency:
            await asyncio.sleep(behaviour.latency)
        if self._chance(behaviour.error_rate):
            self._log(call, 500)
            return error_response(500, "The server had an error while processing your request.")
        self._log(call, 200)
        return JSONResponse(
            self._completion(call),
            headers={"x-request-id": f"req_{uuid.uuid4().hex[:16]}", **self._limit_headers()},
        )

    def answer(self, body: dict, batch_id: str | None = None) -> tuple[int, dict]:
        """The status and JSON body /v1/chat/completions answers `body` with, without what only the online
        path does (the key check, rate limits, hangs, latency, 500s): the Batch API answers each line so."""
        call = ChatCall.of(body)
        status, payload = self._rejection(call) or (200, self._completion(call))
        self._log(call, status, batch_id)
        return status, payload

    def _log(self, call: ChatCall, status: int, batch_id: str | None = None) -> None:
        read = (call.model, call.system, call.document, call.response_format, call.is_repair)
        self.requests.append(LoggedRequest(time.time(), *read, status, batch_id))

    def _rejection(self, call: ChatCall) -> tuple[int, dict] | None:
        """The error answer for a request the server does not take, whatever its load."""
        formats = self.behaviour.supported_formats
        if "extra_body" in call.body:  # the client merges extra_body into the JSON; a batch line must do so itself
            return 400, error_body("Unrecognized request argument supplied: extra_body")
        if call.model not in self.behaviour.models:
            return 404, error_body(f"The model `{call.model}` does not exist.", code="model_not_found")
        if call.response_format not in formats:
            message = f"body.response_format.type: input should be one of {sorted(formats)}, not {call.response_format}"
            return self.behaviour.format_rejection_status, error_body(message)
        return None

    def _completion(self, call: ChatCall) -> dict:
        """A chat.completion object: the offline analyser's result, or a refusal, cut-off or malformed answer."""
        behaviour = self.behaviour
        content = self._content(call)
        refusal, finish_reason = None, "stop"
        if self._chance(behaviour.refusal_rate):
            content, refusal = None, "I'm sorry, I can't help with that."
        elif self._chance(behaviour.length_rate):
            content, finish_reason = content[: len(content) // 2], "length"
        elif self._chance(behaviour.malformed_rate):
            content = content[: max(1, len(content) // 2)] + ' "oops'
        prompt_tokens = call.prompt_tokens
        completion_tokens = len(content or refusal) // 4 + 1 + behaviour.extra_completion_tokens
        if behaviour.honours_max_tokens:
            completion_tokens = min(completion_tokens, call.body.get("max_tokens") or completion_tokens)
        self.tokens_served += prompt_tokens + completion_tokens
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{call.model}-2025-01-01",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": min(behaviour.cached_tokens, prompt_tokens)},
            },
        }

    @staticmethod
    def _content(call: ChatCall) -> str:
        """The offline analyser's answer when this process has one for the requested analysis; else one
        built from the schema the request carries (in response_format, or in the system prompt)."""
        response_format = call.body.get("response_format") or {}
        json_schema = response_format.get("json_schema") or {}
        schema = json_schema.get("schema") or response_format.get("schema") or _schema_in_prompt(call.system)
        analyses = catalogue().analyses
        name = json_schema.get("name")
        analysis = analyses.get(name) or next(
            (a for a in analyses.values() if call.system.startswith(a.system_prompt("").split("\n")[0])), None
        )
        if analysis is not None and analysis.offline is not None and (schema is None or schema == analysis.json_schema):
            return analysis.analyse_offline(call.document or "").model_dump_json()
        return json.dumps(answer_for_schema(schema, call.document or "")) if schema else "{}"


def _schema_in_prompt(system: str) -> dict | None:
    marker = "The JSON object must match this JSON schema:\n"
    if marker not in system:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(system.split(marker, 1)[1])
    except ValueError:
        return None
    return schema


def main() -> None:
    """Serve from the command line (for benchmarks): python -m testbed.fake_openai_server --port N ..."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True, help="write the chosen port here once serving")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    parser.add_argument("--api-key", default="sk-test-key")
    parser.add_argument("--announce-limits", action="store_true", help="send x-ratelimit-* headers like OpenAI")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    batch_knobs = [f for f in fields(Behaviour) if f.name.startswith("batch_")]  # --batch-expire-first N, ...
    for knob in batch_knobs:
        kind = float if "float" in str(knob.type) else int
        parser.add_argument(f"--{knob.name.replace('_', '-')}", type=kind, default=knob.default)
    args = parser.parse_args()
    behaviour = Behaviour(
        api_key=args.api_key,
        latency=args.latency,
        rpm=args.rpm,
        tpm=args.tpm,
        announce_limits=args.announce_limits,
        error_rate=args.error_rate,
        malformed_rate=args.malformed_rate,
        **{knob.name: getattr(args, knob.name) for knob in batch_knobs},
    )
    with FakeOpenAIServer(behaviour) as server:
        from pathlib import Path

        Path(args.port_file).write_text(str(server.port))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
