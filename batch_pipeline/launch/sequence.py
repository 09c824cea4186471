"""The launch sequence: problems, the analysis pinned, source, budget, provider, registration,
response format.

Which checks need what:
- `client_side_problems` needs nothing but the run config: `submit` may run it on a client;
- `refuse_problems` adds the analysis's (its key among those the deployment loaded, an offline
  analyser for ai_model local): where the run executes, and `check`; `pin` then fixes the run's
  definition for every step and worker; a resumed run pins the definition its first run was
  launched with (`launched_definition`), whatever the file says now;
- `read`, `refuse_over_budget` and `register` need the source (and the store), so they run where
  the run executes, and for `check`/`estimate` on the host that has the folder;
- `check_provider` and `settle_response_format` need the key and the endpoint: where the run
  executes (the key never leaves the deployment), and `check` names a missing one.

A refusal is a LaunchRefused whose message says whether anything was written or sent."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.analysis.definition import AnalysisDefinition
from batch_pipeline.analysis.registry import Catalogue, UnknownAnalysis
from batch_pipeline.batch.estimate import CostEstimate, estimate_batch, expected_response_format
from batch_pipeline.batch.partitions import Partition
from batch_pipeline.batch.registration import (
    BatchRequest,
    ReadBatch,
    RegisteredBatch,
    needs_llm,
    partition_size_for,
    read_batch,
    register_batch,
)
from batch_pipeline.batch.request import RunChecks
from batch_pipeline.costs.prices import PRICES_ENV, price_for, price_table
from batch_pipeline.costs.spend import BudgetExceeded, SpendLimit
from batch_pipeline.documents.sources import SourceError, labels_problem
from batch_pipeline.evaluation.labels import BadLabels, fields_problem, read_run_labels
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.unavailable import LlmUnavailable
from batch_pipeline.settings import NotAllowed
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.remembered import remember_response_format, remembered_response_format
from batch_pipeline.store.run_records import run_record

if TYPE_CHECKING:
    from batch_pipeline.llm.provider import LlmProvider

REFUSED = "Refused before writing anything: "
NOT_SENT = "Refused before sending any document: "


class LaunchRefused(Exception):
    """The launch is refused; retrying it as it is would be refused again unless `retryable`."""

    def __init__(self, when: str, reason: str, retryable: bool = True, estimate: CostEstimate | None = None):
        """when: REFUSED or NOT_SENT, what the refusal spared."""
        super().__init__(when + reason)
        self.reason, self.retryable, self.estimate = reason, retryable, estimate


def client_side_problems(request: BatchRequest) -> list[str]:
    """Every problem of the run config that its schema cannot express: the checks that need neither
    the source nor the key, which `submit` runs on a client before the webserver sees the run."""
    return request.problems()


def analysis_problems(
    request: BatchRequest, catalogue: Catalogue, launched_with: AnalysisDefinition | None = None
) -> list[str]:
    """The analysis the run names: loaded here (a broken definition is named with its error), or
    the definition a resumed run was launched with; with an offline analyser when ai_model is local."""
    context = request.context
    try:
        analysis = context.pinned(catalogue, launched_with).model
    except UnknownAnalysis as e:
        return [str(e)]
    if context.is_local and analysis.offline is None:
        offline = ", ".join(catalogue.with_offline_analyser) or "none"
        return [
            f"ai_model 'local' runs an analysis's offline analyser, and {context.model_key!r} has none "
            f"(analyses with one: {offline}); name an LLM as ai_model"
        ]
    return labels_problems(request.checks, analysis)


def labels_problems(checks: RunChecks, analysis: Analysis) -> list[str]:
    """The run's labels file, read as its labelled-score check will read it, against the analysis's fields."""
    if checks.labels is None or labels_problem(checks.labels):
        return []  # no labels, or a path problem BatchRequest.problems names
    try:
        labels = read_run_labels(checks.labels)
    except BadLabels as e:
        return [f"checks.labels: {e}"]
    problem = fields_problem(labels, analysis)
    return [f"checks.labels: {problem}"] if problem else []


def refuse_problems(
    request: BatchRequest, catalogue: Catalogue, launched_with: AnalysisDefinition | None = None
) -> None:
    """client_side_problems and analysis_problems, named at once, as a refusal."""
    if problems := client_side_problems(request) + analysis_problems(request, catalogue, launched_with):
        listed = "".join(f"\n- {problem}" for problem in problems)
        raise LaunchRefused(REFUSED, f"{len(problems)} problem(s) in the run config:{listed}", retryable=False)


def pin(request: BatchRequest, catalogue: Catalogue, launched_with: AnalysisDefinition | None = None) -> BatchRequest:
    """The request with its context pinned: to the definition a resumed run was launched with, else
    to the one its model_key names now."""
    return request.model_copy(update={"context": request.context.pinned(catalogue, launched_with)})


def launched_definition(store: DocumentStore, run_id: str) -> AnalysisDefinition | None:
    """The definition a run was launched with, as the store keeps it (None for runs from before)."""
    record = run_record(store, run_id)
    digest = record.definition_digest if record is not None else None
    return store.analysis_definition(digest) if digest else None


def read(request: BatchRequest, store: DocumentStore) -> ReadBatch:
    """The batch's documents read, converted and vetted; writes nothing."""
    try:
        return read_batch(request, store.stored_conversions)
    except SourceError as e:
        raise LaunchRefused(REFUSED, str(e)) from e


def estimate(
    request: BatchRequest,
    read_batch_: ReadBatch,
    store: DocumentStore,
    endpoint: str | None,
    configured: ResponseFormatMode,
) -> CostEstimate:
    """What the batch would cost, at the response format it would use; sends nothing."""
    mode = expected_response_format(store, endpoint, request.context.ai_model, configured)
    return estimate_batch(store, request, read_batch_, mode)


def endpoint_of(provider: Callable[[], "LlmProvider"]) -> str | None:
    """The endpoint the run would use (None: OpenAI's), refused when the deployment does not allow it."""
    try:
        return provider().settings.base_url
    except NotAllowed as e:
        raise LaunchRefused(NOT_SENT, str(e)) from e


def refuse_over_budget(
    request: BatchRequest,
    read_batch_: ReadBatch,
    store: DocumentStore,
    provider: Callable[[], "LlmProvider"],
    configured: ResponseFormatMode,
) -> CostEstimate:
    """max_cost_usd at launch: a batch whose estimate is over it is refused before any request."""
    assert request.max_cost_usd is not None
    if price_for(request.context.ai_model, price_table()) is None:
        raise LaunchRefused(
            NOT_SENT,
            f"max_cost_usd needs a price for {request.context.ai_model!r}, and the price table has none: "
            f"add it to the file ${PRICES_ENV} names",
        )
    cost = estimate(request, read_batch_, store, endpoint_of(provider), configured)
    if cost.estimated_cost_usd is not None and cost.estimated_cost_usd > request.max_cost_usd:
        raise LaunchRefused(
            NOT_SENT,
            f"the estimate for its {cost.documents_to_send} documents to send is "
            f"${cost.estimated_cost_usd:.4f} ({cost.llm_api}), over max_cost_usd ${request.max_cost_usd}",
            estimate=cost,
        )
    return cost


def check_provider(provider: Callable[[], "LlmProvider"], ai_model: str) -> None:
    """The endpoint is allowed, answers, knows the key and serves the model."""
    try:
        provider().check_serves(ai_model)
    except (LlmUnavailable, NotAllowed) as e:
        raise LaunchRefused(NOT_SENT, str(e)) from e


def register(
    store: DocumentStore,
    run_id: str,
    request: BatchRequest,
    read_batch_: ReadBatch,
    max_concurrent_requests: int,
    budget_run_id: str,
) -> tuple[RegisteredBatch, list[Partition]]:
    """One record per distinct document, one result row per document for the run, and the partitions."""
    size = partition_size_for(request, max_concurrent_requests)
    batch, partitions = register_batch(store, run_id, request, size, read_batch_)
    return batch, [p.model_copy(update={"budget_run_id": budget_run_id}) for p in partitions]


@dataclass(frozen=True)
class SettledFormat:
    mode: ResponseFormatMode
    how: str  # configured | as an earlier run found | probed


def settle_response_format(
    store: DocumentStore,
    run_id: str,
    request: BatchRequest,
    partitions: list[Partition],
    provider: Callable[[], "LlmProvider"],
    configured: ResponseFormatMode,
    budget_run_id: str,
) -> SettledFormat | None:
    """The response format every partition uses: configured, else as remembered for this endpoint
    and model, else probed once (each probe attempt reserved under max_cost_usd) and remembered.
    None when no document would be sent (all cached): then nothing is asked at all."""
    processing = request.pinned_context
    if processing.is_local or not needs_llm(store, run_id, partitions):
        return None
    try:
        llm = provider()
        endpoint = llm.settings.base_url
        if configured is not ResponseFormatMode.auto:
            return SettledFormat(configured, "configured")
        if remembered := remembered_response_format(store, endpoint, processing.ai_model):
            return SettledFormat(ResponseFormatMode(remembered), "as an earlier run found")
        spend = None
        if request.max_cost_usd is not None:
            price = price_for(processing.ai_model, price_table())
            spend = SpendLimit(store, budget_run_id, request.max_cost_usd, price, max_output_tokens=1)
        mode = llm.settle_response_format(processing.model, processing.ai_model, processing.custom_instructions, spend)
        remember_response_format(store, endpoint, processing.ai_model, mode.value)
        return SettledFormat(mode, "probed")
    except (LlmUnavailable, NotAllowed) as e:
        raise LaunchRefused(NOT_SENT, str(e)) from e
    except BudgetExceeded as e:
        raise LaunchRefused(NOT_SENT, f"probing the response format {e}") from None
