"""The document store: documents, runs and per-run analysis results in SQLite or PostgreSQL
(``schema`` the tables, ``engine`` the connection, ``document_store`` every read and write of
documents and results, ``migrations`` older stores brought up to the schema), and what runs
learn and spend: ``response_formats``, ``provider_limits``, ``provider_batches``, ``run_budgets``."""

from batch_pipeline.store.document_store import CachedResult, DocumentStore

__all__ = ["CachedResult", "DocumentStore"]
