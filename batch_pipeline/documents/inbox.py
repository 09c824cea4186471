"""The inbox: which files are new or changed since the last batch, and the batch.yaml beside them.

Plain functions; ``defs/triggers/inbox_sensor.py`` wraps them in a Dagster sensor.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from batch_pipeline import settings
from batch_pipeline.analysis.registry import UnknownAnalysis, catalogue
from batch_pipeline.context import PRIORITY_NAMES, ProcessingContext
from batch_pipeline.conversion.suffixes import READ_SUFFIXES, reading_suffix
from batch_pipeline.documents.folder import SkippedEntry, WalkRules, walk_folder
from batch_pipeline.documents.sources import open_regular

BATCH_FILE = "batch.yaml"
SNAPSHOT_DIR = ".batches"
SNAPSHOT_REASON = "the inbox's own copies of the batches it launched"


class InboxDefaults(BaseModel):
    """What a batch uses when batch.yaml does not say (the inbox resource's configuration, each also
    settable as $BATCH_PIPELINE_INBOX_<FIELD>)."""

    project: str = Field(default="inbox", description="The project of inbox batches.")
    model_key: str | None = Field(default=None, description="The analysis; unset: batch.yaml must name it.")
    ai_model: str | None = Field(default=None, description="The model; unset: batch.yaml must name it.")
    custom_instructions: str = Field(default="", description="Extra instructions for the system prompt.")
    priority: str = Field(default="normal", description=f"One of {', '.join(PRIORITY_NAMES)}.")


class InboxBatch(BaseModel):
    project: str
    context: ProcessingContext
    priority: str
    files: dict[str, str]  # relative path -> sha256

    @property
    def run_key(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.files.items())).encode()).hexdigest()[:32]


class InvalidBatchFile(ValueError):
    pass


@dataclass
class InboxScan:
    files: dict[str, str]  # name -> sha256 of every document file (text or to convert) that could be read
    paths: dict[str, Path]
    skipped: list[SkippedEntry]


def scan(folder: Path) -> InboxScan:
    """The inbox's document files and their hashes (its snapshot folder, links out of the inbox, FIFOs
    and unreadable files left out, each skipped entry with its reason)."""
    rules = WalkRules(excluded=settings.excluded_patterns(), own_folders={SNAPSHOT_DIR: SNAPSHOT_REASON})
    found, skipped = walk_folder(folder, rules)
    scanned = InboxScan(files={}, paths={}, skipped=skipped)
    for file in found:
        if reading_suffix(file.path.name) not in READ_SUFFIXES:
            continue
        try:
            with open_regular(file.path) as f:
                scanned.files[file.name] = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            scanned.skipped.append(SkippedEntry(file.name, f"cannot read it: {e.strerror or e}"))
            continue
        scanned.paths[file.name] = file.path
    return scanned


def new_or_changed(current: dict[str, str], seen: dict[str, str]) -> dict[str, str]:
    return {path: digest for path, digest in current.items() if seen.get(path) != digest}


def read_batch_settings(folder: Path, defaults: InboxDefaults) -> tuple[str, ProcessingContext, str]:
    """(project, context, priority) from batch.yaml over the defaults; InvalidBatchFile says what is wrong."""
    values = defaults.model_dump()
    batch_file = folder / BATCH_FILE
    if batch_file.exists():
        try:
            loaded = yaml.safe_load(batch_file.read_text()) or {}
        except yaml.YAMLError as e:
            raise InvalidBatchFile(f"{BATCH_FILE} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise InvalidBatchFile(f"{BATCH_FILE} must be a mapping of settings")
        unknown = set(loaded) - set(values)
        if unknown:
            raise InvalidBatchFile(f"{BATCH_FILE} has unknown keys {sorted(unknown)}; allowed: {sorted(values)}")
        values.update({k: v for k, v in loaded.items() if v is not None})
    if not values["model_key"]:
        raise InvalidBatchFile(f"no model_key: set it in {BATCH_FILE} or the sensor's configuration")
    try:
        catalogue().get(str(values["model_key"]))
    except UnknownAnalysis as e:
        raise InvalidBatchFile(f"{e} (set it in {BATCH_FILE} or the sensor's configuration)") from None
    if not values["ai_model"]:
        raise InvalidBatchFile(f"no ai_model: set it in {BATCH_FILE} or the sensor's configuration")
    if values["priority"] not in PRIORITY_NAMES:
        raise InvalidBatchFile(f"priority {values['priority']!r} is not one of {', '.join(PRIORITY_NAMES)}")
    try:
        context = ProcessingContext(
            model_key=str(values["model_key"]),
            ai_model=str(values["ai_model"]),
            custom_instructions=str(values["custom_instructions"] or ""),
        )
    except ValidationError as e:
        raise InvalidBatchFile(f"{BATCH_FILE}: {e}") from None
    return str(values["project"]), context, values["priority"]


def snapshot(folder: Path, batch: InboxBatch, paths: dict[str, Path]) -> Path:
    """Copy the batch's files aside, so the run reads exactly what was detected even if the inbox
    changes (read as regular files: a FIFO swapped in since the scan is refused). Whoever writes to
    the inbox can foresee the run key: a link planted where the copy goes is never followed."""
    snapshots = folder / SNAPSHOT_DIR
    snapshots.mkdir(exist_ok=True)
    if snapshots.is_symlink() or not snapshots.is_dir():
        raise OSError(f"{snapshots} is not a folder of the inbox's own")
    target = snapshots / batch.run_key
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)  # an earlier evaluation's copy of the same files
    target.mkdir()
    for name in batch.files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy_fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open_regular(paths[name]) as source, os.fdopen(copy_fd, "wb") as copy:
            shutil.copyfileobj(source, copy)
    return target.resolve()
