"""LlmAnalyser: one document → one chat completion (plus up to max_repairs repairs), through the openai client.

Retries and rate limits live here; the ops never see them.
"""

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from batch_pipeline import settings
from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.analysis.stored_result import stored_json
from batch_pipeline.context import PinnedContext
from batch_pipeline.costs.spend import BudgetExceeded, Hold, SpendLimit
from batch_pipeline.costs.usage import BilledTokens
from batch_pipeline.llm.completions import (
    StillRateLimited,
    completion_request,
    describe,
    failure_status,
    rejects_format,
    retryable,
    sent_body,
)
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.prompts import build_messages, extract_json, repair_messages
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.tokens import estimate_request_tokens
from batch_pipeline.outcome import AnalysisOutcome, DocumentStatus, LlmApi
from batch_pipeline.rate_limits.limits import retry_after_seconds
from batch_pipeline.rate_limits.pace_state import PaceStateUnavailable
from batch_pipeline.rate_limits.pacer import RATE_LIMIT_FALLBACK_PAUSE_SECONDS, NoSlotInTime, Pacer

DEFAULT_OUTPUT_TOKEN_ESTIMATE = 300
T = TypeVar("T")
NOT_SENT_STOPPED = "not sent: the run was stopped; `batch-pipeline resume` analyses it"


class _NotSent(Exception):
    """The run is stopping: this request, not yet bought, is not sent."""


async def _unless_stopped(stopping: asyncio.Event | None, waiting: Awaitable[T]) -> T:
    """What waiting gives (a slot in the pace, a pause between attempts), unless the run is
    stopped first: then _NotSent."""
    if stopping is None:
        return await waiting
    done = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([done, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        done.cancel()
        await asyncio.gather(done, return_exceptions=True)
    if stopping.is_set():
        raise _NotSent
    return done.result()


@dataclass
class _Answer:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    model: str | None
    request_id: str | None


def _answer_of(completion: ChatCompletion, request_id: str | None) -> _Answer:
    choice = completion.choices[0] if completion.choices else None
    message = choice.message if choice else None
    return _Answer(
        content=message.content if message else None,
        refusal=getattr(message, "refusal", None),
        finish_reason=choice.finish_reason if choice else None,
        model=completion.model,
        request_id=request_id or completion.id,
    )


@dataclass
class _Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 0
    seen_usage: bool = False

    def add(self, usage) -> None:
        billed = BilledTokens.of(usage)
        if billed is None:
            return
        self.seen_usage = True
        self.input_tokens += billed.input_tokens
        self.cached_input_tokens += billed.cached_input_tokens
        self.output_tokens += billed.output_tokens


class LlmAnalyser:
    """Implements the Analyser interface of batch_pipeline.batch.runner for OpenAI-compatible servers."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        settings: LlmSettings,
        mode: ResponseFormatMode,
        pacer: Pacer,
        spend: SpendLimit | None = None,
        stopping: asyncio.Event | None = None,
    ):
        if mode is ResponseFormatMode.auto:
            raise ValueError("settle the response format (LlmProvider.settle_response_format) before analysing")
        self.client = client
        self.settings = settings
        self.mode = mode
        self.max_concurrency = settings.max_concurrent_requests
        self.pacer = pacer
        self.spend = spend  # the run's max_cost_usd, when it has one
        self.format_rejected = False  # the server refused the response format it took before
        self.stopping = stopping  # set: send nothing more (what is in flight still gets its answer)
        self._output_estimate = DEFAULT_OUTPUT_TOKEN_ESTIMATE

    async def close(self) -> None:
        try:
            await self.client.close()
        finally:
            await self.pacer.close()

    async def _sleep(self, seconds: float) -> None:
        await _unless_stopped(self.stopping, asyncio.sleep(seconds))

    def _wait(self, retry_state) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, openai.RateLimitError):
            return 0.0  # the pacer's shared pause does the waiting, for every request at once
        return wait_random_exponential(multiplier=0.5, max=self.settings.retry_max_wait_seconds)(retry_state)

    async def _request(self, messages, ai_model: str, model: Analysis, usage: _Usage) -> _Answer:
        # Token estimates feed a tokens-per-minute limit and max_cost_usd; without them they are not worth their CPU.
        kwargs = completion_request(model, ai_model, messages, self.mode, self.settings.max_output_tokens)
        prompt_tokens = estimate_request_tokens(sent_body(kwargs)) if self.pacer.limits_tokens or self.spend else 0
        estimate = prompt_tokens + self._output_estimate if self.pacer.limits_tokens else 0
        stop = _AttemptsOrRateLimitWait(self.settings.max_attempts, self.settings.rate_limit_wait_seconds)
        try:
            async for attempt in AsyncRetrying(
                stop=stop,
                wait=self._wait,
                sleep=self._sleep,
                retry=retry_if_exception(retryable),
                reraise=True,
            ):
                with attempt:
                    if self.spend:
                        self.spend.check_fits(prompt_tokens)  # a budget already spent is not worth a rate-limit slot
                    slot = self.pacer.acquire(estimate, may_wait=stop.rate_limit_wait_left())
                    await _unless_stopped(self.stopping, slot)
                    with await self._hold(prompt_tokens) as hold:
                        usage.attempts += 1
                        raw, completion = await self._send(kwargs, hold)
        except openai.RateLimitError as e:
            if stop.gave_up_after_429s is not None:
                raise StillRateLimited(stop.gave_up_after_429s, e) from e
            raise
        usage.add(completion.usage)
        if completion.usage is not None:
            await self.pacer.settle(estimate, completion.usage.total_tokens or 0)
            self._output_estimate = max(
                50, int(0.8 * self._output_estimate + 0.2 * (completion.usage.completion_tokens or 0))
            )
        return _answer_of(completion, raw.headers.get("x-request-id"))

    async def _hold(self, prompt_tokens: int) -> Hold:
        """This attempt's reservation under max_cost_usd, taken right before it is sent (its rate-limit
        slot already waited for): BudgetExceeded when its worst case does not fit."""
        if self.spend is None:
            return Hold(None)
        try:
            return self.spend.hold(prompt_tokens)
        except BudgetExceeded:
            await self.pacer.failed()  # its slot goes unused: for the pacing, an attempt without an answer
            raise

    async def _send(self, kwargs: dict, hold: Hold):
        """One attempt: the raw response and its completion; the hold settled however it ends."""
        hold.sent = True
        try:
            raw = await self.client.chat.completions.with_raw_response.create(**kwargs)
        except openai.RateLimitError as e:
            hold.release()
            await self.pacer.rate_limited(e.response.headers)
            raise
        except openai.APIStatusError as e:
            hold.release()
            await self.pacer.failed(e.response.headers)
            raise
        except BaseException:
            await self.pacer.failed()  # no answer: the hold keeps its worst case, it may have been billed
            raise
        await self.pacer.answered(raw.headers)
        completion = raw.parse()
        hold.settle(completion.usage)
        return raw, completion

    def request_body(self, text: str, context: PinnedContext) -> dict:
        """The body of this document's request, as sent online (a Batch API line's body)."""
        messages = build_messages(context.model, context.custom_instructions, text, self.mode)
        max_tokens = self.settings.max_output_tokens
        return sent_body(completion_request(context.model, context.ai_model, messages, self.mode, max_tokens))

    async def analyse(self, text: str, context: PinnedContext, earlier_answer: str | None = None) -> AnalysisOutcome:
        """earlier_answer: the model's answer to this document in a run stopped before repairing it:
        repaired from there, not asked again."""
        first = None if earlier_answer is None else _Answer(earlier_answer, None, "stop", None, None)
        return await self._analyse(text, context, first)

    async def analyse_batch_answer(
        self, text: str, context: PinnedContext, body: dict, request_id: str | None
    ) -> AnalysisOutcome:
        """An answer the Batch API gave for this document, judged as an online one; a repair, if it
        needs one, goes online."""
        return await self._analyse(text, context, first=(body, request_id))

    async def _analyse(
        self,
        text: str,
        context: PinnedContext,
        first: tuple[dict, str | None] | _Answer | None,
    ) -> AnalysisOutcome:
        """first: the answer to judge before asking anything (a Batch API line's body, or an earlier
        run's answer); None: ask."""
        started = time.perf_counter()
        usage = _Usage()
        answer: _Answer | None = None

        def outcome(
            status: DocumentStatus, error: str = "", result: str | None = None, raw: str | None = None
        ) -> AnalysisOutcome:
            return AnalysisOutcome(
                status=status,
                error=error,
                result=result,
                raw_output=raw,
                input_tokens=usage.input_tokens if usage.seen_usage else None,
                cached_input_tokens=usage.cached_input_tokens if usage.seen_usage else None,
                output_tokens=usage.output_tokens if usage.seen_usage else None,
                latency_ms=(time.perf_counter() - started) * 1000,
                attempts=usage.attempts,
                request_id=answer.request_id if answer else None,
                answered_by_model=answer.model if answer else None,
                llm_api=LlmApi.batch if isinstance(first, tuple) else LlmApi.online,
            )

        def unanswered(status: DocumentStatus, error: str) -> AnalysisOutcome:
            """A request that got no usable answer. When it was a repair, the answer it was to
            repair was paid for: kept, so that the next run repairs it instead of asking again."""
            if answer is None or answer.content is None:
                return outcome(status, error)
            return outcome(
                status, f"{error}; the answer it was to repair is kept: the next run repairs it", raw=answer.content
            )

        try:
            messages = build_messages(context.model, context.custom_instructions, text, self.mode)
            if first is None:
                answer = await self._request(messages, context.ai_model, context.model, usage)
            elif isinstance(first, _Answer):
                answer = first
            else:
                body, request_id = first
                completion = ChatCompletion.model_validate(body)
                usage.add(completion.usage)
                usage.attempts += 1
                answer = _answer_of(completion, request_id)
            verdict = self._judge(context.model, answer)
            repairs = 0
            while verdict.problem is not None and verdict.repairable and repairs < self.settings.max_repairs:
                repairs += 1
                repair_request = repair_messages(messages, answer.content or "", verdict.problem)
                answer = await self._request(repair_request, context.ai_model, context.model, usage)
                verdict = self._judge(context.model, answer)
        except StillRateLimited as e:
            return unanswered(DocumentStatus.rate_limited, str(e))
        except openai.APIError as e:
            if isinstance(e, openai.APIStatusError) and rejects_format(e):
                self.format_rejected = True
            return unanswered(failure_status(e), describe(e))
        except _NotSent:
            if answer is None:
                return outcome(DocumentStatus.interrupted, NOT_SENT_STOPPED)
            # The answer was paid for: kept, for resume to repair instead of asking again.
            problem = f"{verdict.problem}; not repaired: the run was stopped; `batch-pipeline resume` repairs it"
            return outcome(DocumentStatus.interrupted, problem, raw=answer.content)
        except NoSlotInTime as e:
            return unanswered(DocumentStatus.rate_limited, str(e))
        except BudgetExceeded as e:
            return unanswered(DocumentStatus.budget_exceeded, str(e))
        except PaceStateUnavailable as e:
            return unanswered(DocumentStatus.pace_state_unavailable, f"not sent: {e}; resume the run once it answers")
        except Exception as e:  # whatever else goes wrong ends this document alone
            return outcome(DocumentStatus.provider_error, describe(e))
        if verdict.problem is None:
            return outcome(DocumentStatus.ok, result=verdict.result)
        return outcome(verdict.status, verdict.problem, raw=answer.content or answer.refusal)

    @staticmethod
    def _judge(model: Analysis, answer: _Answer) -> "_Verdict":
        if answer.refusal or answer.finish_reason == "content_filter":
            return _Verdict(
                DocumentStatus.refused, f"the model refused: {answer.refusal or 'content filter'}", repairable=False
            )
        if answer.finish_reason == "length":
            return _Verdict(DocumentStatus.truncated, "the answer was cut off at max_output_tokens", repairable=False)
        try:
            # strict=False: raw newlines inside strings are a common, harmless slip of small models.
            parsed = json.loads(extract_json(answer.content or ""), strict=False)
        except json.JSONDecodeError as e:
            return _Verdict(DocumentStatus.invalid_output, f"not valid JSON: {e}", repairable=True)
        try:
            result = model.result_schema.model_validate(parsed)
        except ValidationError as e:
            problem = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'answer'}: {err['msg']}" for err in e.errors()[:10]
            )
            return _Verdict(DocumentStatus.invalid_output, f"not valid JSON for the schema: {problem}", repairable=True)
        return _Verdict(None, None, repairable=False, result=stored_json(result, settings.max_findings()))


class _AttemptsOrRateLimitWait:
    """When a request stops being retried: after max_attempts failures that are the provider's
    (5xx, timeouts, connection errors), or once HTTP 429s have kept it waiting longer than
    rate_limit_wait_seconds — a 429 is the provider pacing us, not a failed attempt."""

    def __init__(self, max_attempts: int, rate_limit_wait_seconds: float):
        self.max_attempts = max_attempts
        self.rate_limit_wait_seconds = rate_limit_wait_seconds
        self.failures = 0
        self.rate_limited_since: float | None = None
        self.gave_up_after_429s: float | None = None  # seconds waited, once 429s made it give up

    def rate_limit_wait_left(self) -> float:
        if self.rate_limited_since is None:
            return self.rate_limit_wait_seconds
        return self.rate_limit_wait_seconds - (time.monotonic() - self.rate_limited_since)

    def __call__(self, retry_state) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if not isinstance(error, openai.RateLimitError):
            self.failures += 1
            return self.failures >= self.max_attempts
        now = time.monotonic()
        self.rate_limited_since = self.rate_limited_since or now
        asked = retry_after_seconds(error.response.headers) or RATE_LIMIT_FALLBACK_PAUSE_SECONDS
        # Stop now rather than wait for an answer that would come after rate_limit_wait_seconds anyway.
        if now + asked - self.rate_limited_since > self.rate_limit_wait_seconds:
            self.gave_up_after_429s = now - self.rate_limited_since
            return True
        return False


@dataclass
class _Verdict:
    status: DocumentStatus | None
    problem: str | None
    repairable: bool
    result: str | None = None
