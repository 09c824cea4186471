"""What a launch asks for: the run config of create_document_records, declared once. Each field's
type, default and description live here; the Dagster config class the Launchpad shows is derived
from this model (``defs/config.py``), so a new setting is one edit."""

import enum
import re

from pydantic import BaseModel, Field, model_validator

from batch_pipeline import settings
from batch_pipeline.context import PinnedContext, ProcessingContext
from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.documents.sources import MAX_FILE_BYTES, labels_problem, source_problem
from batch_pipeline.outcome import LlmApi


class FailurePolicy(enum.Enum):
    """What a run does when some documents fail while the rest complete."""

    succeed = "succeed"
    fail = "fail"


class InlineDocument(BaseModel):
    """A document given in the run config itself."""

    filename: str
    markdown_content: str

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value):
        if isinstance(value, tuple | list) and len(value) == 2:
            return {"filename": value[0], "markdown_content": value[1]}
        return value


class RunChecks(BaseModel):
    """The checks of analysed_documents every run gets. A check that fails against its line fails the
    run once its results and report are stored (as on_document_failure: fail does); with no line, a
    check measures and passes."""

    max_failure_rate: float | None = Field(
        default=None,
        description="The largest share (0 to 1) of the batch's documents that may end in a failure status. "
        f"Unset: ${settings.MAX_FAILURE_RATE_ENV}, else no line.",
    )
    labels: str | None = Field(
        default=None,
        description='Labelled answers to score the run against: a .jsonl file of {"filename" (or "sha256"): ..., '
        '"expected": {field: value, ...}} lines, as `batch-pipeline evaluate --labels` reads, in a folder the '
        "deployment allows sources in. Unset: no labelled-score check.",
    )
    min_score: float | None = Field(
        default=None,
        description=f"The lowest overall score (0 to 1) on the labels. Unset: ${settings.MIN_SCORE_ENV}, else no line.",
    )

    def problems(self) -> list[str]:
        found = []
        for name in ("max_failure_rate", "min_score"):
            if (value := getattr(self, name)) is not None and not 0.0 <= value <= 1.0:
                found.append(f"checks.{name} must be from 0 to 1, got {value}")
        if self.min_score is not None and self.labels is None:
            found.append("checks.min_score is set but checks.labels is not: there is nothing to score")
        if self.labels is not None and (problem := labels_problem(self.labels)):
            found.append(f"checks.labels: {problem}")
        for deployment_setting in (settings.max_failure_rate, settings.min_score):
            try:
                deployment_setting()
            except ValueError as e:
                found.append(str(e))
        return found

    def with_deployment_lines(self) -> "RunChecks":
        """The lines the run keeps: its own, else the deployment's (recorded with the run)."""
        return self.model_copy(
            update={
                "max_failure_rate": self.max_failure_rate
                if self.max_failure_rate is not None
                else settings.max_failure_rate(),
                "min_score": self.min_score if self.min_score is not None else settings.min_score(),
            }
        )


class BatchRequest(BaseModel):
    """A batch to analyse: where its documents are, the context they are analysed under, and the
    limits of this run."""

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
    context: ProcessingContext = Field(description="The analysis, the model and the extra instructions.")
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
    checks: RunChecks = Field(
        default_factory=RunChecks,
        description="The lines the run's checks on analysed_documents keep (failure rate; score on labelled answers).",
    )

    @property
    def inline_documents(self) -> list[tuple[str, str]] | None:
        """The inline documents as (filename, markdown content)."""
        return [(d.filename, d.markdown_content) for d in self.documents] if self.documents else None

    @property
    def pinned_context(self) -> PinnedContext:
        """The context with its analysis definition, once the launch pinned it (launch/sequence.pin)."""
        if not isinstance(self.context, PinnedContext):
            raise TypeError("the request's context is not pinned to a definition yet (launch.sequence.pin)")
        return self.context

    def problems(self) -> list[str]:
        """Launch checks the Dagster config schema cannot express, every one at once (the source's
        existence and kind included; whether it holds documents is known only once it is read)."""
        found = []
        if not self.project.strip():
            found.append("project must not be empty")
        if not self.context.ai_model.strip():
            found.append("context.ai_model must not be empty (use 'local' for the offline analysers)")
        if self.partition_size is not None and self.partition_size < 1:
            found.append(f"partition_size must be at least 1, got {self.partition_size}")
        if self.analysis_timeout_seconds <= 0:
            found.append(f"analysis_timeout_seconds must be more than 0, got {self.analysis_timeout_seconds}")
        for name in ("max_document_bytes", "max_file_bytes", "max_pages"):
            if (value := getattr(self, name)) < 1:
                found.append(f"{name} must be at least 1, got {value}")
        if self.conversion_timeout_seconds <= 0:
            found.append(f"conversion_timeout_seconds must be more than 0, got {self.conversion_timeout_seconds}")
        if not OCR_LANGUAGES_RE.fullmatch(self.ocr_languages):
            found.append(
                f"ocr_languages must be Tesseract language codes joined by '+' (eng+deu), got {self.ocr_languages!r}"
            )
        if self.llm_api is LlmApi.batch and self.context.is_local:
            found.append("llm_api batch sends documents to an LLM's Batch API: it needs an LLM ai_model, not 'local'")
        if self.max_cost_usd is not None and self.max_cost_usd <= 0:
            found.append(f"max_cost_usd must be more than 0, got {self.max_cost_usd}")
        if problem := source_problem(self.source, self.inline_documents):
            found.append(problem)
        found += self.checks.problems()
        for deployment_setting in (settings.max_findings, settings.conversion_memory_mb):
            try:  # the deployment's: a bad value fails the launch, not each document after it was paid for
                deployment_setting()
            except ValueError as e:
                found.append(str(e))
        for name, value in [("project", self.project), ("context.ai_model", self.context.ai_model),
                            ("context.custom_instructions", self.context.custom_instructions)]:  # fmt: skip
            if not _is_unicode(value):
                found.append(f"{name} is not valid Unicode text (it holds a lone surrogate)")
        return found


OCR_LANGUAGES_RE = re.compile(r"[A-Za-z_]+(\+[A-Za-z_]+)*")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
