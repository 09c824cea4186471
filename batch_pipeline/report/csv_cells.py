"""CSV the product writes, safe to open in a spreadsheet: a text cell that a spreadsheet program would
run as a formula (a file named ``=HYPERLINK(...).md``) gets a leading ``'``, as OWASP's advice on
CSV injection says; numbers stay numbers."""

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutralised_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its text cells unable to start a formula. Only text is touched: -3 in a numeric
    column, or as a number among a column's Python objects, stays -3."""
    text_columns = [c for c in frame.columns if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype)]
    neutral = frame.copy()
    for column in text_columns:  # not assign(**...): a column may be named anything, "self" too
        neutral[column] = frame[column].map(_neutralised_cell)
    return neutral


def write_csv(frame: pd.DataFrame, target) -> None:
    """The frame as CSV (no index) to a path or an open text stream, its text cells neutralised."""
    # RFC 4180's CRLF: with it the writer also quotes a cell holding a bare carriage return, which a
    # spreadsheet would otherwise take for the end of a row.
    neutralised(frame).to_csv(target, index=False, lineterminator="\r\n")
