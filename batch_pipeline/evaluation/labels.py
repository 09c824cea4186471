"""Labelled answers as `evaluate` and a run's labelled-score check read them: one JSON line per
document, ``{"filename": ..., "expected": {field: value}}`` (or ``"sha256"`` instead of ``filename``)."""

import json
from pathlib import Path

from batch_pipeline.analysis.analysis import Analysis

MAX_LABEL_BYTES = 50_000_000


class BadLabels(ValueError):
    pass


def read_labels(path: Path) -> list[dict]:
    """The label lines, every bad one named at once."""
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise BadLabels(f"{path}: larger than {MAX_LABEL_BYTES} bytes")
    labels, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{number}: not JSON: {e.msg}")
            continue
        if not isinstance(label, dict) or not isinstance(label.get("expected"), dict):
            problems.append(f'{path}:{number}: a label is {{"filename" or "sha256": ..., "expected": {{...}}}}')
        elif not isinstance(label.get("filename") or label.get("sha256"), str):
            problems.append(f'{path}:{number}: name the document with "filename" or "sha256"')
        else:
            labels.append(label)
    if problems:
        raise BadLabels("\n".join(problems))
    return labels


def fields_problem(labels: list[dict], analysis: Analysis) -> str:
    """Fields the labels give that the analysis does not have ("" when none)."""
    schema_fields = analysis.json_schema["properties"]
    unknown = sorted({f for label in labels for f in label["expected"] if f not in schema_fields})
    return f"labels name fields {analysis.key} does not have: {', '.join(unknown)}" if unknown else ""
