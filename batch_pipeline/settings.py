"""Where the pipeline keeps its files, read from the environment at call time.

Order of precedence for the data folder: ``BATCH_PIPELINE_HOME``, then
``$DAGSTER_HOME/batch_pipeline``, then ``~/.batch_pipeline``.
"""

import os
from pathlib import Path

DATABASE_URL_ENV = "BATCH_PIPELINE_DATABASE_URL"
REPORTS_DIR_ENV = "BATCH_PIPELINE_REPORTS_DIR"
HOME_ENV = "BATCH_PIPELINE_HOME"


def data_dir() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).expanduser() / "batch_pipeline"
    return Path.home() / ".batch_pipeline"


def database_url() -> str:
    """The document store's SQLAlchemy URL: ``BATCH_PIPELINE_DATABASE_URL`` or an SQLite file."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'store.sqlite'}"


def reports_dir() -> Path:
    """Folder holding one sub-folder of report files per run."""
    if os.environ.get(REPORTS_DIR_ENV):
        return Path(os.environ[REPORTS_DIR_ENV]).expanduser()
    return data_dir() / "reports"
