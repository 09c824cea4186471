"""The job's three ops, one module each: thin, they take config and resources, call the plain
packages, log and emit metadata."""

from batch_pipeline.defs.ops.aggregation import aggregate
from batch_pipeline.defs.ops.analysis import analyze_partition
from batch_pipeline.defs.ops.records import create_document_records

__all__ = ["aggregate", "analyze_partition", "create_document_records"]
