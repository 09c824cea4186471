"""What a batch would cost, before anything is sent: the documents that would go (cached ones
excluded), their input tokens from the offline tokenizer over the real prompts, their output
tokens, and the price online and through the Batch API. Calibrated from the usage earlier runs of
the same context recorded, when there are any."""

import json
import random

import sqlalchemy as sa
from pydantic import BaseModel

from batch_pipeline.batch.registration import ReadBatch
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import PinnedContext
from batch_pipeline.costs.prices import estimate_cost, price_for, price_table
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.response_format import ResponseFormatMode, response_format
from batch_pipeline.llm.tokens import estimate_request_tokens, estimate_tokens
from batch_pipeline.outcome import LlmApi
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.remembered import remembered_response_format
from batch_pipeline.store.schema import analysis_results, batch_runs, documents

CALIBRATION_ROWS = 500
OFFLINE_SAMPLE = 100  # documents whose offline answer stands in for the LLM's, without history


class CostEstimate(BaseModel):
    ai_model: str
    llm_api: str
    documents: int  # analysable documents in the batch
    documents_cached: int
    documents_to_send: int
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None  # through llm_api; None: the model has no price
    online_cost_usd: float | None
    batch_cost_usd: float | None  # None: the price table has no Batch price for the model
    calibrated_from_documents: int  # earlier answers of this context the estimate learned from
    input_correction: float  # what the provider counted / what the tokenizer counted, in those answers
    response_format: str

    def summary(self) -> str:
        def usd(value: float | None) -> str:
            return "no price" if value is None else f"${value:.4f}"

        basis = (
            f"calibrated on {self.calibrated_from_documents} earlier answers (input x{self.input_correction:.3f})"
            if self.calibrated_from_documents
            else "not calibrated: no earlier answers of this context (output from the offline analysers' answers)"
        )
        return "\n".join([
            f"documents_to_send: {self.documents_to_send} of {self.documents} ({self.documents_cached} cached)",
            f"input_tokens: {self.input_tokens}",
            f"output_tokens: {self.output_tokens}",
            f"estimated_cost_usd: {usd(self.estimated_cost_usd)} ({self.llm_api}, {self.ai_model})",
            f"online: {usd(self.online_cost_usd)}, batch: {usd(self.batch_cost_usd)}",
            f"basis: {basis}; response format {self.response_format}",
        ])  # fmt: skip


def expected_response_format(
    store: DocumentStore, endpoint: str, ai_model: str, configured: ResponseFormatMode
) -> ResponseFormatMode:
    """The mode a run would use, without asking the provider: configured, else remembered, else
    json_schema (what OpenAI's models take)."""
    if configured is not ResponseFormatMode.auto:
        return configured
    remembered = remembered_response_format(store, endpoint, ai_model)
    return ResponseFormatMode(remembered) if remembered else ResponseFormatMode.json_schema


def prompt_tokens(context: PinnedContext, text: str, mode: ResponseFormatMode) -> int:
    """Input tokens of one document's request as the tokenizer counts them, the response format's schema included."""
    messages = build_messages(context.model, context.custom_instructions, text, mode)
    return estimate_request_tokens({"messages": messages, "response_format": response_format(context.model, mode)})


def estimate_batch(
    store: DocumentStore, request: BatchRequest, read: ReadBatch, mode: ResponseFormatMode
) -> CostEstimate:
    context = request.pinned_context
    analysable = [d for d in read.docs if d.problem is None]
    cached = {} if request.force else store.find_cached("", context.cache_key(), [d.document_id for d in analysable])
    to_send = [d for d in analysable if d.document_id not in cached]
    counted_input = sum(prompt_tokens(context, d.text or "", mode) for d in to_send)

    calibration = _calibration(store, context, mode)
    if calibration is not None:
        answers, correction, output_per_document = calibration
    else:
        answers, correction = 0, 1.0
        output_per_document = _uncalibrated_output_tokens(context, [d.text or "" for d in to_send])
    input_tokens = round(counted_input * correction)
    output_tokens = round(output_per_document * len(to_send))

    price = price_for(context.ai_model, price_table())
    online = estimate_cost(price, input_tokens, 0, output_tokens, LlmApi.online)
    has_batch_price = price is not None and price.batch_input is not None and price.batch_output is not None
    batch = estimate_cost(price, input_tokens, 0, output_tokens, LlmApi.batch) if has_batch_price else None
    return CostEstimate(
        ai_model=context.ai_model,
        llm_api=request.llm_api.value,
        documents=len(analysable),
        documents_cached=len(cached),
        documents_to_send=len(to_send),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        estimated_cost_usd=batch if request.llm_api.value == "batch" and batch is not None else online,
        online_cost_usd=online,
        batch_cost_usd=batch,
        calibrated_from_documents=answers,
        input_correction=round(correction, 4),
        response_format=mode.value,
    )


def _calibration(
    store: DocumentStore, context: PinnedContext, mode: ResponseFormatMode
) -> tuple[int, float, float] | None:
    """From the latest answers recorded under this context (else this model_key and ai_model):
    (answers, recorded input / tokenizer input, output tokens per document), repairs and retries included."""
    r, runs, docs = analysis_results.c, batch_runs.c, documents.c
    base = (
        sa.select(docs.content, r.input_tokens, r.output_tokens)
        .join_from(analysis_results, documents, r.document_id == docs.document_id)
        .join(batch_runs, r.run_id == runs.run_id)
        .where(r.input_tokens.is_not(None), r.output_tokens.is_not(None), r.cached_from_run_id.is_(None))
        .order_by(r.finished_at.desc())
        .limit(CALIBRATION_ROWS)
    )
    same_context = base.where(r.context_key == context.cache_key())
    same_model = base.where(runs.model_key == context.model_key, runs.ai_model == context.ai_model)
    with store.engine.connect() as conn:
        rows = conn.execute(same_context).all() or conn.execute(same_model).all()
    if not rows:
        return None
    counted = sum(prompt_tokens(context, row.content or "", mode) for row in rows)
    recorded_input = sum(row.input_tokens for row in rows)
    recorded_output = sum(row.output_tokens for row in rows)
    return len(rows), recorded_input / max(counted, 1), recorded_output / len(rows)


def _uncalibrated_output_tokens(context: PinnedContext, texts: list[str]) -> float:
    """Without history: the tokens of the offline analyser's answer (same schema) on a sample; for an
    analysis without one, of its examples' results; else of its schema (an answer names every field)."""
    if not texts:
        return 0.0
    analysis = context.model_with_offline_analyser()
    if analysis.offline is not None:
        sample = random.Random(0).sample(texts, min(OFFLINE_SAMPLE, len(texts)))
        answers = [analysis.analyse_offline(text).model_dump_json() for text in sample]
    elif analysis.definition.examples:
        answers = [json.dumps(example.result) for example in analysis.definition.examples]
    else:
        answers = [json.dumps(analysis.json_schema)]
    return sum(estimate_tokens(answer) for answer in answers) / len(answers)
