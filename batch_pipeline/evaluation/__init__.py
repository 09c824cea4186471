"""Choosing a model with evidence: runs compared over the same documents (`compare`), and a run
scored against labelled answers (`evaluate`), field by field with the rules of `rules.py`."""
