"""results.csv's columns of the analysis's own fields: one per top-level field, a list of values
joined into one cell, a list of objects (findings, say) counted (its items are in the result JSON
beside), so that a spreadsheet shows a user's fields rather than a JSON blob."""

import json

import pandas as pd

from batch_pipeline.analysis.stored_result import OMITTED_KEY

LIST_SEPARATOR = "; "


def cell(value: object) -> object:
    """A field's value as one cell: scalars as they are, a list's items joined, an object as JSON."""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def columns_of(fields: dict[str, str], schema: dict) -> dict[str, str]:
    """Column name -> the field it shows: a list of objects as ``<field>.count``."""
    columns = {}
    for field, kind in fields.items():
        items = (schema["properties"][field].get("items") or {}) if kind == "array" else {}
        columns[f"{field}.count" if "properties" in items else field] = field
    return columns


def with_result_columns(rows: pd.DataFrame, fields: dict[str, str], schema: dict) -> pd.DataFrame:
    """The rows with a column per field of their stored result (empty where a document has none).
    A field named like one of the rows' own columns is shown as ``result.<field>``."""
    parsed = [json.loads(text) if isinstance(text, str) and text else {} for text in rows["result"]]
    columns = {}
    for column, field in columns_of(fields, schema).items():
        name = f"result.{column}" if column in rows.columns or column == OMITTED_KEY else column
        counted = column != field
        columns[name] = [
            (len(result[field] or []) if counted else cell(result[field])) if field in result else None
            for result in parsed
        ]
    position = list(rows.columns).index("result") + 1
    expanded = rows.copy()
    for offset, (name, values) in enumerate(columns.items()):
        expanded.insert(position + offset, name, values)
    return expanded
