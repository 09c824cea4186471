"""compare_contexts_job and comparison_runs_sensor: one batch under several contexts, launched from
the UI. The job checks every context's launch at once and writes nothing; once it succeeds the
sensor submits one isolated run of document_batch_job per context, tagged with the job's run id."""

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.defs.config import LAUNCHPAD_OVERRIDES, batch_run_config
from batch_pipeline.defs.config_classes import config_class
from batch_pipeline.defs.job import document_batch_job
from batch_pipeline.defs.launch_schema import launchable
from batch_pipeline.defs.tags import CONTEXT_INDEX_TAG, LAUNCHED_BY_TAG, TRIGGER_TAG, run_tags
from batch_pipeline.launch.comparison import ComparisonRequest

CHECK_OP = "check_contexts"


class ComparisonConfig(config_class(ComparisonRequest, overrides=LAUNCHPAD_OVERRIDES)):
    __doc__ = ComparisonRequest.__doc__

    def to_request(self) -> ComparisonRequest:
        return ComparisonRequest.model_validate(self.model_dump(mode="json"))


@dg.op(name=CHECK_OP, tags={"kind": "launch"})
def check_contexts(context: dg.OpExecutionContext, config: ComparisonConfig) -> None:
    """Refuse the comparison, every problem named, unless each context's run would launch."""
    request = config.to_request()
    if problems := request.problems(catalogue()):
        listed = "".join(f"\n- {problem}" for problem in problems)
        raise dg.Failure(f"Refused before any run: {len(problems)} problem(s):{listed}", allow_retries=False)
    context.add_output_metadata(
        {
            "contexts": dg.MetadataValue.json([c.model_dump() for c in request.contexts]),
            "compare_command": dg.MetadataValue.md(
                f"`batch-pipeline compare --launched-by {context.run_id}` once the runs end "
                f"(on the Runs page: tag `{LAUNCHED_BY_TAG}={context.run_id}`)"
            ),
        }
    )


@dg.graph
def compare_contexts():
    check_contexts()


compare_contexts_job = launchable(
    compare_contexts,
    name="compare_contexts_job",
    description="One batch under several contexts: checks every context's launch, then comparison_runs_sensor "
    "submits one isolated run of document_batch_job per context. Compare them with "
    "`batch-pipeline compare --launched-by RUN_ID`.",
    executor_def=dg.in_process_executor,
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[compare_contexts_job],
    request_job=document_batch_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After compare_contexts_job succeeds: one run of document_batch_job per context it lists.",
)
def comparison_runs_sensor(context: dg.RunStatusSensorContext):
    launcher = context.dagster_run
    try:
        request = ComparisonConfig(**launcher.run_config["ops"][CHECK_OP]["config"]).to_request()
        executor = settings.triggered_run_executor()
    except Exception as e:  # noqa: BLE001 - one launcher's bad state must not hold up the next ones
        # E.g. a reload dropped one of its analyses, or $BATCH_PIPELINE_EXECUTOR is wrong.
        context.log.error(f"compare_contexts_job run {launcher.run_id} launches nothing: {e}")
        return dg.SkipReason(f"run {launcher.run_id}: {type(e).__name__}")
    return [
        dg.RunRequest(
            run_key=f"{launcher.run_id}/{index}",
            run_config=batch_run_config(request.project, request.source, processing, executor),
            tags={
                **run_tags(processing, project=request.project),
                LAUNCHED_BY_TAG: launcher.run_id,
                CONTEXT_INDEX_TAG: str(index),
                TRIGGER_TAG: "comparison_runs_sensor",
            },
        )  # fmt: skip
        for index, processing in enumerate(request.contexts)
    ]
