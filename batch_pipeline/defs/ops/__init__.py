"""The job's three ops (and the asset's last, conclude_analysed_documents), one module each, named after its op: thin, they take config and
resources, call the plain packages, log and emit metadata."""

from batch_pipeline.defs.ops.aggregate import aggregate, conclude_analysed_documents
from batch_pipeline.defs.ops.analyse_partition import analyse_partition
from batch_pipeline.defs.ops.create_document_records import create_document_records

__all__ = ["aggregate", "analyse_partition", "conclude_analysed_documents", "create_document_records"]
