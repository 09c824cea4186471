"""The provider's Files and Batches endpoints, as the pipeline uses them: upload an input file,
create a batch exactly once (``batches.create`` has no idempotency key), poll it, download its files."""

from collections.abc import Callable
from datetime import datetime

import openai
from openai.types import Batch
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from batch_pipeline.llm.batch_lines import ENDPOINT
from batch_pipeline.llm.completions import retryable

KEY_FIELD = "batch_pipeline_key"
RUN_FIELD = "batch_pipeline_run"
COMPLETION_WINDOW = "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# A batch created by a timed-out request shows up in the list newest first; older ones are not it.
CLOCK_SKEW_SECONDS = 600
MOST_LISTED = 10_000


class CreateRefused(Exception):
    """The caller may no longer create this batch (it lost its lease on the batch's record)."""


class BatchApi:
    def __init__(self, client: openai.AsyncOpenAI, max_attempts: int, retry_max_wait_seconds: float):
        self.client = client
        self.max_attempts = max_attempts
        self.retry_max_wait_seconds = retry_max_wait_seconds

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self.retry_max_wait_seconds),
            retry=retry_if_exception(retryable),
            reraise=True,
        )

    async def upload(self, name: str, lines: list[bytes]) -> str:
        """The input file's id (an upload costs nothing: repeating one after a failure is harmless)."""
        async for attempt in self._retrying():
            with attempt:
                uploaded = await self.client.files.create(file=(name, b"".join(lines)), purpose="batch")
        return uploaded.id

    async def find(self, key: str, input_file_id: str | None, created_after: datetime) -> Batch | None:
        """The batch whose metadata carries this key, or (where the provider lists no metadata) that
        was created from this input file, if the provider has one."""
        oldest = created_after.timestamp() - CLOCK_SKEW_SECONDS
        listed = 0
        async for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get(KEY_FIELD) == key or (input_file_id and batch.input_file_id == input_file_id):
                return batch
            listed += 1
            if batch.created_at < oldest or listed >= MOST_LISTED:
                return None
        return None

    async def create(
        self,
        key: str,
        run_id: str,
        input_file_id: str,
        created_after: datetime,
        log: Callable[[str], None],
        may_create: Callable[[], bool],
    ) -> Batch:
        """Create the batch once: after a failed or timed-out attempt (which may have created it
        anyway), look it up first. `may_create` is asked right before every request; once it says
        no (the caller lost its right to create this batch), CreateRefused is raised instead."""
        metadata = {KEY_FIELD: key, RUN_FIELD: run_id}
        async for attempt in self._retrying():
            with attempt:
                retry = attempt.retry_state.attempt_number > 1
                if retry and (found := await self.find(key, input_file_id, created_after)):
                    log(f"batch {found.id} was created by an attempt that did not hear back; using it")
                    return found
                if not may_create():
                    raise CreateRefused(key)
                return await self.client.batches.create(
                    input_file_id=input_file_id,
                    endpoint=ENDPOINT,
                    completion_window=COMPLETION_WINDOW,
                    metadata=metadata,
                )
        raise AssertionError("unreachable: the last attempt re-raises")

    async def cancel(self, batch_id: str) -> None:
        async for attempt in self._retrying():
            with attempt:
                await self.client.batches.cancel(batch_id)

    async def retrieve(self, batch_id: str) -> Batch:
        async for attempt in self._retrying():
            with attempt:
                return await self.client.batches.retrieve(batch_id)
        raise AssertionError("unreachable: the last attempt re-raises")

    async def download(self, file_id: str | None) -> str:
        if file_id is None:
            return ""
        async for attempt in self._retrying():
            with attempt:
                return (await self.client.files.content(file_id)).text
        raise AssertionError("unreachable: the last attempt re-raises")
