"""The only Dagster layer: the job (``job.py``, its whole shape), its run config, thin ops,
resources and triggers (sensors, schedule). Everything below it is plain Python."""
