"""Distributed execution on Celery: the settings runs and workers share, and the worker command's logic."""
