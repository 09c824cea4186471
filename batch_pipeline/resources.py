"""Dagster resources: thin wrappers that open the plain-Python services for a run."""

import dagster as dg
from pydantic import Field, PrivateAttr

from batch_pipeline import settings
from batch_pipeline.store import DocumentStore


class DocumentStoreResource(dg.ConfigurableResource):
    """The document store (documents and analysis results), opened once per run."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: $BATCH_PIPELINE_DATABASE_URL, else an SQLite file in the data folder. "
        "Pass a URL that holds a password only through dagster.EnvVar.",
    )
    _store: DocumentStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = DocumentStore(self.database_url or settings.database_url())
        self._store.create_schema()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> DocumentStore:
        if self._store is None:
            raise RuntimeError("DocumentStoreResource used outside a run")
        return self._store
