"""content_compliance's offline detectors, one module per kind of value (imported only when an
offline analysis runs: an LLM run loads none of their libraries)."""
