"""Labelled answers as `evaluate` and a run's labelled-score check read them: one JSON line per
document, ``{"filename": ..., "expected": {field: value}}`` (or ``"sha256"`` instead of ``filename``)."""

import json
from pathlib import Path

from batch_pipeline.analysis.analysis import Analysis
from batch_pipeline.documents.sources import allowed_source, labels_problem, open_regular, source_path

MAX_LABEL_BYTES = 50_000_000


class BadLabels(ValueError):
    pass


def read_labels(path: Path) -> list[dict]:
    """The label lines of a file named on the command line (its user's own), every bad one named at once."""
    with path.open("rb") as f:
        return parse_labels(f.read(MAX_LABEL_BYTES + 1), str(path))


def read_run_labels(given: str) -> list[dict]:
    """A run's labels file (``checks.labels``, run config: untrusted), checked again where it is read:
    inside the allowed folders, a regular file, bounded; messages name it as the run config did."""
    if problem := labels_problem(given):
        raise BadLabels(problem)
    try:
        with open_regular(source_path(given), allowed_source) as f:
            return parse_labels(f.read(MAX_LABEL_BYTES + 1), given)
    except OSError as e:
        raise BadLabels(f"Labels file {given!r} cannot be read: {e.strerror or e}") from None


def parse_labels(data: bytes, name: str) -> list[dict]:
    if len(data) > MAX_LABEL_BYTES:
        raise BadLabels(f"{name}: larger than {MAX_LABEL_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLabels(f"{name}: not UTF-8 text (byte {e.start})") from None
    labels, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            problems.append(f"{name}:{number}: not JSON: {getattr(e, 'msg', 'nested too deeply')}")
            continue
        if not isinstance(label, dict) or not isinstance(label.get("expected"), dict):
            problems.append(f'{name}:{number}: a label is {{"filename" or "sha256": ..., "expected": {{...}}}}')
        elif not isinstance(label.get("filename") or label.get("sha256"), str):
            problems.append(f'{name}:{number}: name the document with "filename" or "sha256"')
        else:
            labels.append(label)
    if problems:
        raise BadLabels("\n".join(problems[:20]) + (f"\n… {len(problems) - 20} more" if len(problems) > 20 else ""))
    return labels


def fields_problem(labels: list[dict], analysis: Analysis) -> str:
    """Fields the labels give that the analysis does not have ("" when none)."""
    schema_fields = analysis.json_schema["properties"]
    unknown = sorted({f for label in labels for f in label["expected"] if f not in schema_fields})
    return f"labels name fields {analysis.key} does not have: {', '.join(unknown)}" if unknown else ""
