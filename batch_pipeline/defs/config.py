"""The job's run config: what the Launchpad shows (with every field's description) and what
every trigger builds. All of it is set on ``create_document_records``."""

import dagster as dg
from pydantic import Field

from batch_pipeline.analysis import REGISTRY
from batch_pipeline.batch.registration import BatchRequest, FailurePolicy
from batch_pipeline.context import ModelKey, ProcessingContext
from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.documents.sources import MAX_FILE_BYTES
from batch_pipeline.outcome import LlmApi

BATCH_OP = "create_document_records"

MODEL_KEY_HELP = "; ".join(f"{m.key}: {m.description}" for m in REGISTRY.values())


class ProcessingContextConfig(dg.Config):
    """The ProcessingContext as run config."""

    model_key: ModelKey = Field(description=f"The analysis to run. One of — {MODEL_KEY_HELP}")
    ai_model: str = Field(
        description="The LLM to use, as the provider names it (e.g. gpt-4.1-mini), or 'local' for the offline analysers.",
    )
    custom_instructions: str = Field(
        default="",
        description="Extra instructions appended to the system prompt. The offline analysers record but do not interpret them.",
    )

    def to_context(self) -> ProcessingContext:
        return ProcessingContext(
            model_key=self.model_key, ai_model=self.ai_model, custom_instructions=self.custom_instructions
        )


class InlineDocument(dg.Config):
    filename: str
    markdown_content: str


class BatchConfig(dg.Config):
    project: str = Field(description="Records are scoped to a project: same project + same content = same document.")
    source: str | None = Field(
        default=None,
        description="A folder (searched recursively) of text files (.md, .markdown, .txt) and files converted to "
        "markdown when read (.pdf, .docx, .pptx, .xlsx, .html, .htm, .eml, .png, .jpg, .jpeg, .tif, .tiff), or a "
        ".jsonl file of {filename, markdown_content} or {filename, content_base64} records. Relative paths "
        "resolve from $BATCH_PIPELINE_SOURCE_ROOT (make dev: the repository), else the run's working directory; "
        "the path (links and .. resolved) must lie in a folder the deployment allows ($BATCH_PIPELINE_SOURCE_ROOTS).",
    )
    documents: list[InlineDocument] | None = Field(default=None, description="Inline documents, instead of source.")
    context: ProcessingContextConfig
    partition_size: int | None = Field(
        default=None,
        description="Documents per analysis step (one mapped step each). Unset: 500 for ai_model local; "
        "for an LLM, 128 x the llm resource's max_concurrent_requests (8192 by default), so the drain at "
        "each partition's end stays a small share of its time.",
    )
    force: bool = Field(default=False, description="Re-analyse documents that already have a result for this context.")
    max_document_bytes: int = Field(
        default=1_000_000,
        description="Larger documents are not read beyond this many bytes; they are stored as failed with status "
        "too_large. Applies to files, to each line of a .jsonl source and to inline documents.",
    )
    max_file_bytes: int = Field(
        default=MAX_FILE_BYTES,
        description="Files to convert (PDF, Office, e-mail, images) larger than this are not read; they are stored "
        "as failed with status too_large. Their markdown is then held to max_document_bytes.",
    )
    max_pages: int = Field(
        default=ConversionLimits.max_pages,
        description="Files with more pages (PDF pages, TIFF frames, slides, sheets) are not converted: too_large.",
    )
    conversion_timeout_seconds: float = Field(
        default=ConversionLimits.timeout_seconds,
        description="Longest time one file's conversion (OCR included) may take; past it the conversion is stopped "
        "and the document ends as conversion_failed while the rest go on.",
    )
    ocr_languages: str = Field(
        default=ConversionLimits.ocr_languages,
        description="Languages Tesseract reads in scans and image-only PDF pages, joined by '+' (e.g. eng+deu); "
        "each needs its Debian package (tesseract-ocr-deu).",
    )
    analysis_timeout_seconds: float = Field(
        default=60.0,
        description="Longest time the offline analysers may spend on one document; past it the document ends "
        "as analysis_timeout and the rest go on. (An LLM document is bounded by the llm resource's "
        "timeout_seconds and max_attempts instead.)",
    )
    follow_symlinks: bool = Field(
        default=False,
        description="false: a symbolic link in the source folder that points outside it (or to a folder) is not "
        "read, and is listed as skipped; true: links are followed into the folders the deployment allows "
        "($BATCH_PIPELINE_SOURCE_ROOTS); links elsewhere and link loops are still skipped.",
    )
    llm_api: LlmApi = Field(
        default=LlmApi.online,
        description="online: one chat-completion request per document, answered in seconds. batch: the "
        "documents go to the provider's Batch API (about half the price, answered within 24 h); the run polls "
        "the batch, and a run that dies meanwhile is finished by `batch-pipeline resume RUN_ID`, which polls "
        "the same batch instead of paying for a new one.",
    )
    max_cost_usd: float | None = Field(
        default=None,
        description="The most this run may spend with the provider (USD, from the price table). A launch whose "
        "estimate is over it is refused before any request; during the run a request is sent only while the "
        "spend so far plus every request in flight at its worst case stays within it; documents not sent end "
        "budget_exceeded.",
    )
    on_document_failure: FailurePolicy = Field(
        default=FailurePolicy.succeed,
        description="succeed: the run succeeds and counts failed documents in its metadata; "
        "fail: the run fails after writing the report if any document failed.",
    )

    def to_request(self) -> BatchRequest:
        inline = [(d.filename, d.markdown_content) for d in self.documents] if self.documents else None
        return BatchRequest(
            project=self.project,
            source=self.source,
            documents=inline,
            context=self.context.to_context(),
            partition_size=self.partition_size,
            force=self.force,
            max_document_bytes=self.max_document_bytes,
            max_file_bytes=self.max_file_bytes,
            max_pages=self.max_pages,
            conversion_timeout_seconds=self.conversion_timeout_seconds,
            ocr_languages=self.ocr_languages,
            follow_symlinks=self.follow_symlinks,
            analysis_timeout_seconds=self.analysis_timeout_seconds,
            on_document_failure=self.on_document_failure,
            llm_api=self.llm_api,
            max_cost_usd=self.max_cost_usd,
        )


def batch_run_config(project: str, source: str, context: ProcessingContext, executor: str | None = None) -> dict:
    """Run config for document_batch_job over a folder or .jsonl file (what submit, the inbox sensor
    and the schedule launch): only what they set, as a user would write it. executor: in_process
    (None: the job's default), multiprocess or celery, with that executor's defaults."""
    config = {"project": project, "source": source, "context": context.as_run_config()}
    run_config: dict = {"ops": {BATCH_OP: {"config": config}}}
    if executor is not None:
        run_config["execution"] = {"config": {executor: {}}}
    return run_config


def batch_config_of(run_config: dict) -> dict:
    """The create_document_records section of a run config dict (empty when absent)."""
    return run_config.get("ops", {}).get(BATCH_OP, {}).get("config", {})
