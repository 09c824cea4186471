"""The code location: ``batch_pipeline.definitions:defs``."""

import dagster as dg

from batch_pipeline.jobs import document_batch_job
from batch_pipeline.resources import DocumentStoreResource

defs = dg.Definitions(
    jobs=[document_batch_job],
    resources={"document_store": DocumentStoreResource()},
)
