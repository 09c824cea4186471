"""Dagster resources: thin wrappers that open the plain-Python services for a run."""

import dagster as dg
import openai
from pydantic import Field, PrivateAttr

from batch_pipeline import settings
from batch_pipeline.analysis_models import AnalysisModel
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from batch_pipeline.llm import LlmAnalyser, LlmSettings, LlmUnavailable, completion_request, rejects_format, retryable
from batch_pipeline.prompts import FALLBACK_ORDER, ResponseFormatMode, build_messages
from batch_pipeline.store import DocumentStore


class DocumentStoreResource(dg.ConfigurableResource):
    """The document store (documents and analysis results), opened once per run."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: $BATCH_PIPELINE_DATABASE_URL, else an SQLite file in the data folder. "
        "Pass a URL that holds a password only through dagster.EnvVar.",
    )
    _store: DocumentStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = DocumentStore(self.database_url or settings.database_url())
        self._store.create_schema()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> DocumentStore:
        if self._store is None:
            raise RuntimeError("DocumentStoreResource used outside a run")
        return self._store


def _transient(error: BaseException) -> bool:
    if isinstance(error, openai.APIStatusError) and rejects_format(error):
        return False
    return retryable(error)


class LlmResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat-completions provider: key from OPENAI_API_KEY, base URL from OPENAI_BASE_URL."""

    api_key: str | None = Field(default=None, description="Bind with dagster.EnvVar('OPENAI_API_KEY'), never a literal.")
    base_url: str | None = Field(default=None, description="Unset: $OPENAI_BASE_URL, else api.openai.com.")
    timeout_seconds: float = Field(default=60.0, description="Per-request timeout.")
    max_concurrent_requests: int = Field(default=64, description="Requests in flight at once, per partition step.")
    requests_per_minute: int | None = Field(default=None, description="Client-side RPM limit (unset: none).")
    tokens_per_minute: int | None = Field(default=None, description="Client-side TPM limit (unset: none).")
    max_attempts: int = Field(default=5, description="HTTP attempts per request before a document fails.")
    max_output_tokens: int = Field(default=4096, description="max_tokens of every completion.")
    response_format: ResponseFormatMode = Field(
        default=ResponseFormatMode.auto,
        description="auto: probe once per run, before any document, for the richest mode the server accepts: "
        "strict json_schema, else json_object+schema, json_object, prompt only.",
    )

    def settings(self) -> LlmSettings:
        return LlmSettings(
            timeout_seconds=self.timeout_seconds,
            max_concurrent_requests=self.max_concurrent_requests,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            max_attempts=self.max_attempts,
            max_output_tokens=self.max_output_tokens,
        )

    def _client_options(self) -> dict:
        if not self.api_key:
            raise LlmUnavailable("OPENAI_API_KEY is not set: an LLM ai_model needs an API key (any value for servers without auth).")
        return {"api_key": self.api_key, "base_url": self.base_url, "timeout": self.timeout_seconds, "max_retries": 0}

    def check_serves(self, ai_model: str) -> None:
        """Fail fast, before any document is sent: the key is accepted and the provider serves ai_model."""
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
                raise LlmUnavailable(f"The provider at {where} answered HTTP {e.status_code} for model {ai_model!r}.") from None

    def settle_response_format(self, model: AnalysisModel, ai_model: str, custom_instructions: str) -> ResponseFormatMode:
        """The richest response format the server accepts. In ``auto``, one probe request per mode
        (the run's prompt with an empty document, max_tokens=1) until the server accepts one; the
        run then keeps that mode, and the probe has warmed the provider's prompt cache."""
        if self.response_format is not ResponseFormatMode.auto:
            return self.response_format
        # No client retries: llama.cpp rejects a format with HTTP 500, which the client would retry.
        with openai.OpenAI(**self._client_options()) as client:
            for mode in FALLBACK_ORDER:
                messages = build_messages(model, custom_instructions, "", mode)
                kwargs = completion_request(model, ai_model, messages, mode, max_tokens=1)
                try:
                    for attempt in Retrying(stop=stop_after_attempt(max(5, self.max_attempts)), wait=wait_random_exponential(max=10),
                                            retry=retry_if_exception(_transient), reraise=True):  # fmt: skip
                        with attempt:
                            client.chat.completions.create(**kwargs)
                    return mode
                except openai.APIStatusError as e:
                    if not rejects_format(e):
                        raise LlmUnavailable(f"Probing {ai_model!r} failed: HTTP {e.status_code} {e.message}") from None
                except openai.APIConnectionError as e:
                    raise LlmUnavailable(f"Cannot reach the provider at {client.base_url}: {e}") from None
        raise LlmUnavailable(f"The provider rejected every response format for {ai_model!r}")

    def analyser(self, mode: ResponseFormatMode) -> LlmAnalyser:
        """A new analyser with its own connection pool and rate gate; close it when done."""
        return LlmAnalyser(openai.AsyncOpenAI(**self._client_options()), self.settings(), mode)
