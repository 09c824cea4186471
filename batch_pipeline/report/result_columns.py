"""results.csv's columns of the analysis's own fields: one per top-level field, a list joined into
one cell, so that a spreadsheet shows a user's fields rather than a JSON blob."""

import json

import pandas as pd

from batch_pipeline.analysis.stored_result import OMITTED_KEY

LIST_SEPARATOR = "; "


def cell(value: object) -> object:
    """A field's value as one cell: scalars as they are, a list's items joined, an object as JSON."""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(_item(item)) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _item(item: object) -> object:
    if isinstance(item, dict):
        return ", ".join(f"{key}={value}" for key, value in item.items())
    return item


def with_result_columns(rows: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """The rows with a column per field of their stored result (empty where a document has none).
    A field named like one of the rows' own columns is shown as ``result.<field>``."""
    parsed = [json.loads(text) if isinstance(text, str) and text else {} for text in rows["result"]]
    columns = {}
    for field in fields:
        name = f"result.{field}" if field in rows.columns or field == OMITTED_KEY else field
        columns[name] = [cell(result.get(field)) if field in result else None for result in parsed]
    position = list(rows.columns).index("result") + 1
    expanded = rows.copy()
    for offset, (name, values) in enumerate(columns.items()):
        expanded.insert(position + offset, name, values)
    return expanded
