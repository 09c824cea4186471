"""Dagster resources: thin wrappers that open the plain-Python services for a run."""

import dagster as dg
import openai
from pydantic import Field, PrivateAttr

from batch_pipeline import settings
from batch_pipeline.llm import LlmAnalyser, LlmSettings, LlmUnavailable
from batch_pipeline.prompts import ResponseFormatMode
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
        description="auto: strict json_schema, falling back to json_object+schema, json_object, prompt only "
        "when the server rejects a mode.",
    )

    def settings(self) -> LlmSettings:
        return LlmSettings(
            timeout_seconds=self.timeout_seconds,
            max_concurrent_requests=self.max_concurrent_requests,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            max_attempts=self.max_attempts,
            max_output_tokens=self.max_output_tokens,
            response_format=self.response_format,
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

    def analyser(self) -> LlmAnalyser:
        """A new analyser with its own connection pool and rate gate; close it when done."""
        return LlmAnalyser(openai.AsyncOpenAI(**self._client_options()), self.settings())
