"""Preparing a DAGSTER_HOME before anything launches runs in it.

Dagster creates its SQLite tables on the first ``DagsterInstance.get()`` of a new home, and two
processes doing that at once can fail ("table runs already exists") or leave two alembic heads
behind, after which every launch fails. Initialising once, under a file lock, first avoids both.
"""

import fcntl
import os
import shutil
from pathlib import Path

import dagster as dg

from batch_pipeline import settings
from batch_pipeline.store import DocumentStore

LOCK_FILE = ".batch_pipeline_init.lock"


class NoDagsterHome(Exception):
    pass


def init_home(config: Path | None = None) -> Path:
    """Create ``$DAGSTER_HOME`` (with ``config`` as its dagster.yaml when it has none yet), then
    Dagster's storage and the document store's schema. Idempotent; safe to run concurrently."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise NoDagsterHome("set DAGSTER_HOME to the folder that holds (or will hold) the instance")
    home_path = Path(home).expanduser().resolve()
    home_path.mkdir(parents=True, exist_ok=True)
    with (home_path / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if config is not None and not (home_path / "dagster.yaml").exists():
            shutil.copyfile(config, home_path / "dagster.yaml")
        with dg.DagsterInstance.get() as instance:
            # Constructing the instance creates every storage's tables; these reads keep that true
            # should a later Dagster construct them lazily.
            instance.get_run_records(limit=1)
            instance.get_asset_keys(limit=1)
        store = DocumentStore(settings.database_url())
        try:
            store.create_schema()
        finally:
            store.close()
    return home_path
