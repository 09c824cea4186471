"""The provider as a whole, before any document is sent: is the key accepted and the model served
(preflight), and which response format does the server take (one probe per run)."""

import asyncio
from collections.abc import Callable

import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.costs.spend import Hold, SpendLimit
from batch_pipeline.llm.analyser import LlmAnalyser
from batch_pipeline.llm.completions import completion_request, rejects_format, retryable, sent_body
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.response_format import FALLBACK_ORDER, ResponseFormatMode
from batch_pipeline.llm.tokens import estimate_request_tokens
from batch_pipeline.llm.unavailable import LlmUnavailable
from batch_pipeline.rate_limits.limits import ProviderLimits
from batch_pipeline.rate_limits.pace_state import (
    LocalPaceState,
    PaceStateUnavailable,
    check_reachable,
    open_pace_state,
    provider_fingerprint,
)
from batch_pipeline.rate_limits.pacer import Pacer


def _transient(error: BaseException) -> bool:
    if isinstance(error, openai.APIStatusError) and rejects_format(error):
        return False
    return retryable(error)


def _probe(client: openai.OpenAI, request: dict, spend: SpendLimit | None) -> None:
    """One probe attempt, reserved under spend first and settled however it ends."""
    hold = spend.hold(estimate_request_tokens(sent_body(request))) if spend else Hold(None)
    with hold:
        hold.sent = True
        try:
            completion = client.chat.completions.create(**request)
        except openai.APIStatusError:
            hold.release()  # an answer saying no (format rejected, 5xx): not billed
            raise
        hold.settle(completion.usage)


class LlmProvider:
    """An OpenAI-compatible chat-completions provider, as configured by LlmSettings."""

    def __init__(self, settings: LlmSettings):
        self.settings = settings

    def _client_options(self) -> dict:
        if self.settings.api_key is None or not self.settings.api_key.get_secret_value():
            raise LlmUnavailable(
                "OPENAI_API_KEY is not set: an LLM ai_model needs an API key (any value for servers without auth)."
            )
        return {
            "api_key": self.settings.api_key.get_secret_value(),
            "base_url": self.settings.base_url,
            "timeout": self.settings.timeout_seconds,
            "max_retries": 0,
        }

    def check_serves(self, ai_model: str) -> None:
        """Fail fast, before any document is sent: the pace state answers, the key is accepted
        and the provider serves ai_model."""
        if self.settings.rate_limit_url:
            try:
                check_reachable(self.settings.rate_limit_url)
            except PaceStateUnavailable as e:
                raise LlmUnavailable(f"{e}; no request was sent") from None
        with openai.OpenAI(**{**self._client_options(), "max_retries": 2}) as client:
            where = str(client.base_url)
            try:
                client.models.retrieve(ai_model)
            except openai.AuthenticationError:
                raise LlmUnavailable(f"The provider at {where} refused the API key (HTTP 401).") from None
            except openai.PermissionDeniedError:
                raise LlmUnavailable(f"The API key may not use model {ai_model!r} at {where} (HTTP 403).") from None
            except openai.NotFoundError:
                # Some servers (llama.cpp's) have no /models/{id}; their model list still answers.
                try:
                    served = {model.id for model in client.models.list()}
                except openai.APIError:
                    served = set()
                if ai_model not in served:
                    raise LlmUnavailable(f"The provider at {where} does not serve model {ai_model!r}.") from None
            except openai.APIConnectionError as e:
                raise LlmUnavailable(f"Cannot reach the provider at {where}: {e}") from None
            except openai.APIStatusError as e:
                raise LlmUnavailable(
                    f"The provider at {where} answered HTTP {e.status_code} for model {ai_model!r}."
                ) from None

    def settle_response_format(
        self, model: Analysis, ai_model: str, custom_instructions: str, spend: SpendLimit | None = None
    ) -> ResponseFormatMode:
        """The richest response format the server accepts. In ``auto``, one probe request per mode
        (the run's prompt with an empty document, max_tokens=1) until the server accepts one; the
        run then keeps that mode, and the probe has warmed the provider's prompt cache. Under spend
        each attempt, retries included, is reserved before it is sent (raises BudgetExceeded)."""
        if self.settings.response_format is not ResponseFormatMode.auto:
            return self.settings.response_format
        attempts = max(5, self.settings.max_attempts)
        # No client retries: llama.cpp rejects a format with HTTP 500, which the client would retry.
        with openai.OpenAI(**self._client_options()) as client:
            for mode in FALLBACK_ORDER:
                messages = build_messages(model, custom_instructions, "", mode)
                request = completion_request(model, ai_model, messages, mode, max_tokens=1)
                retrying = Retrying(
                    stop=stop_after_attempt(attempts),
                    wait=wait_random_exponential(multiplier=0.5, max=self.settings.retry_max_wait_seconds),
                    retry=retry_if_exception(_transient),
                    reraise=True,
                )
                try:
                    retrying(_probe, client, request, spend)
                    return mode
                except openai.APIStatusError as e:
                    if not rejects_format(e):
                        raise LlmUnavailable(f"Probing {ai_model!r} failed: HTTP {e.status_code} {e.message}") from None
                except openai.APIConnectionError as e:
                    raise LlmUnavailable(f"Cannot reach the provider at {client.base_url}: {e}") from None
        raise LlmUnavailable(f"The provider rejected every response format for {ai_model!r}")

    def fingerprint(self, ai_model: str) -> str:
        """What the pace of this endpoint, model and key is known by (the key only as a digest)."""
        return provider_fingerprint(self.settings.base_url or "", ai_model, self._client_options()["api_key"])

    def analyser(
        self,
        mode: ResponseFormatMode,
        ai_model: str,
        log: Callable[[str], None],
        spend: SpendLimit | None = None,
        remembered_limits: ProviderLimits | None = None,
        stopping: asyncio.Event | None = None,
    ) -> LlmAnalyser:
        """A new analyser with its own connection pool, drawing on the pace shared by every
        analyser of this provider, model and key (in Redis when rate_limit_url is set, else in this
        process, which starts from remembered_limits); it sends nothing more once stopping is set.
        Close it when done."""
        options = self._client_options()
        # aiohttp as the client's transport: about a quarter less CPU per request than the default,
        # and the analysis step is CPU-bound on one core at high concurrency (docs/benchmarks.md).
        client = openai.AsyncOpenAI(**options, http_client=openai.DefaultAioHttpClient(timeout=options["timeout"]))
        configured = ProviderLimits(self.settings.requests_per_minute, self.settings.tokens_per_minute)
        state = open_pace_state(self.settings.rate_limit_url, self.fingerprint(ai_model))
        if remembered_limits is not None and isinstance(state, LocalPaceState):
            state.recall(remembered_limits)
        pacer = Pacer(state, configured, log)
        return LlmAnalyser(client, self.settings, mode, pacer, spend, stopping)
