"""The Celery settings that the runs sending steps and the workers taking them must share: a worker
on another broker, or declaring the queue differently, leaves a run's steps waiting forever."""

from batch_pipeline import settings

# A run's priority (defs/tags.py) is added to this on the broker: RabbitMQ hands out 9 before 5 before 1.
DEFAULT_STEP_PRIORITY = 5
MAX_PRIORITY = 10


def celery_settings(queue: str) -> dict[str, object]:
    return {
        "task_default_queue": queue,
        # A step's message is acknowledged when the step ends, not when a worker takes it: the broker
        # hands the step of a worker killed mid-partition to another worker, and the partition then
        # skips the documents already finished in this run.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message per free slot: a worker holds back no step it is not running, so an idle worker
        # or a later, higher-priority step gets it.
        "worker_prefetch_multiplier": 1,
        # Every queue is a priority queue (RabbitMQ's x-max-priority), declared alike by runs and workers.
        "task_queue_max_priority": MAX_PRIORITY,
        "task_default_priority": DEFAULT_STEP_PRIORITY,
        "broker_connection_retry_on_startup": True,
    }


def worker_app_settings() -> dict[str, object]:
    """A worker's Celery settings, its broker and backend read from this host's environment."""
    return {
        "broker_url": settings.celery_broker_url(),
        "result_backend": settings.celery_backend_url(),
        **celery_settings(settings.celery_queue()),
    }
