"""The job's three ops, one module each, named after its op: thin, they take config and
resources, call the plain packages, log and emit metadata."""

from batch_pipeline.defs.ops.aggregate import aggregate
from batch_pipeline.defs.ops.analyse_partition import analyse_partition
from batch_pipeline.defs.ops.create_document_records import create_document_records

__all__ = ["aggregate", "analyse_partition", "create_document_records"]
