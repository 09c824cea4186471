"""The job's executor, chosen per run: in_process (the default), multiprocess on this host, or Celery workers.

Modelled on Dagster's multi_or_in_process_executor, which offers only the first two.
"""

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.defs.launch_schema import without_environment
from batch_pipeline.workers.celery_settings import celery_settings

# Only the queue is the run's choice: the broker, the result backend and Celery's settings are the
# deployment's ($BATCH_PIPELINE_CELERY_BROKER / _BACKEND), shared with its workers, never run config's.
CELERY_CONFIG = {
    "queue": dg.Field(
        str,
        is_required=False,
        description=f"The queue this run's steps go to. Unset: ${settings.CELERY_QUEUE_ENV}, else "
        f"{settings.DEFAULT_CELERY_QUEUE}. Workers take from the queues given to `batch-pipeline worker --queues`. "
        "The run's priority orders its steps within the queue. The broker and the result backend are the "
        f"deployment's: ${settings.CELERY_BROKER_ENV} (else {settings.DEFAULT_CELERY_BROKER}) and "
        f"${settings.CELERY_BACKEND_ENV} (else {settings.DEFAULT_CELERY_BACKEND}).",
    ),
}


# How often the run's process looks for finished steps on Celery. dagster-celery sleeps a fixed
# TICK_SECONDS (1 s) between looks, so each step boundary waited up to a second; a look costs one
# result-backend read per step in flight.
CELERY_POLL_SECONDS = 0.1


def _executor_definition(choice: str) -> dg.ExecutorDefinition:
    if choice == "celery":
        from dagster_celery import celery_executor, core_execution_loop  # loaded by the runs that choose it

        # A constant of this deployment, not of the run: every Celery run's process polls alike.
        core_execution_loop.TICK_SECONDS = CELERY_POLL_SECONDS
        return celery_executor
    return {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}[choice]


def _requirements(config: dict) -> list[dg.ExecutorRequirement]:
    return [] if "in_process" in config else dg.multiple_process_executor_requirements()


@dg.executor(
    name="in_process_multiprocess_or_celery",
    config_schema=dg.Field(
        # Without {env: ...} and deployment-only fields: the asset job Dagster builds takes this schema as it is.
        without_environment(
            dg.Selector(
                {
                    "in_process": dg.in_process_executor.config_schema.as_field(),
                    "multiprocess": dg.multiprocess_executor.config_schema.as_field(),
                    "celery": dg.Field(CELERY_CONFIG),
                }
            )
        ),
        default_value={"in_process": {}},
        description="in_process (default): every step in the run's process, one after another. multiprocess: a "
        "process per step on this host. celery: steps on Celery workers (`batch-pipeline worker`), on any host "
        "sharing the instance's PostgreSQL storage and the document store.",
    ),
    requirements=_requirements,
)
def batch_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    ((choice, config),) = init_context.executor_config.items()
    if choice == "celery":
        config = celery_executor_config(config)
    definition = _executor_definition(choice)
    return definition.executor_creation_fn(
        dg.InitExecutorContext(
            job=init_context.job, executor_def=definition, executor_config=config, instance=init_context.instance
        )
    )


def celery_executor_config(config: dict) -> dict:
    """dagster-celery's executor config from this product's: the deployment's broker and backend, the
    settings workers share, the run's queue."""
    return {
        "broker": settings.celery_broker_url(),
        "backend": settings.celery_backend_url(),
        "include": [],
        "config_source": celery_settings(settings.celery_queue(config.get("queue"))),
        "retries": {"enabled": {}},
    }


def runs_steps_in_its_own_process(run_config: dict) -> bool:
    """Whether every step of a run with this config executes in the run's process, so that resources
    live as long as the run (they are set up for each step otherwise)."""
    return "in_process" in (run_config.get("execution") or {}).get("config", {"in_process": {}})
