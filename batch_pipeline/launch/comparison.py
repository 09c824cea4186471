"""One batch under several contexts, launched at once (the UI's compare_contexts_job, as `submit`
with repeated --ai-model does): one isolated run of document_batch_job per context, every
context's launch problems named before any run starts."""

from pydantic import BaseModel, Field

from batch_pipeline.analysis.registry import Catalogue
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.context import ProcessingContext
from batch_pipeline.launch.sequence import analysis_problems, client_side_problems

_BATCH_FIELDS = BatchRequest.model_fields


class ComparisonRequest(BaseModel):
    """A batch to analyse under several contexts, one run each; compare the runs with
    `batch-pipeline compare --launched-by RUN_ID` (RUN_ID: this launch's run)."""

    project: str = Field(description=_BATCH_FIELDS["project"].description)
    source: str = Field(description=_BATCH_FIELDS["source"].description)
    contexts: list[ProcessingContext] = Field(
        description="Two or more contexts (analysis, model, instructions): each gets its own run of "
        "document_batch_job, with exactly that context, over the same documents."
    )

    def requests(self) -> list[BatchRequest]:
        return [BatchRequest(project=self.project, source=self.source, context=c) for c in self.contexts]

    def problems(self, catalogue: Catalogue) -> list[str]:
        """Every context's launch problems, each named with its context, and repeated contexts."""
        found = [] if len(self.contexts) >= 2 else ["a comparison needs two contexts or more"]
        seen: set[tuple[str, str, str]] = set()
        for index, request in enumerate(self.requests()):
            context = request.context
            label = f"contexts[{index}] ({context.model_key} / {context.ai_model})"
            if (identity := (context.model_key, context.ai_model, context.custom_instructions)) in seen:
                found.append(f"{label} repeats an earlier context: its run would only reread the cache")
            seen.add(identity)
            found += [f"{label}: {p}" for p in client_side_problems(request) + analysis_problems(request, catalogue)]
        return list(dict.fromkeys(found))
