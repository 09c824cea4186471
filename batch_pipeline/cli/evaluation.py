"""`batch-pipeline compare` and `batch-pipeline evaluate`, against this host's document store."""

import sys
from pathlib import Path

from batch_pipeline.analysis.registry import UnknownAnalysis
from batch_pipeline.cli.local import open_store
from batch_pipeline.evaluation.compare import CannotCompare, compare
from batch_pipeline.evaluation.evaluate import evaluate
from batch_pipeline.evaluation.labels import BadLabels, read_labels
from batch_pipeline.evaluation.render import render
from batch_pipeline.evaluation.runs import RunNotFound, load_run


def compare_runs(run_ids: list[str], output_format: str) -> int:
    store = open_store()
    try:
        print(render(compare([load_run(store, run_id) for run_id in run_ids]), output_format))
    except (RunNotFound, CannotCompare, UnknownAnalysis) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def evaluate_run(run_id: str, labels: Path, output_format: str) -> int:
    store = open_store()
    try:
        print(render(evaluate(load_run(store, run_id), read_labels(labels)), output_format))
    except (RunNotFound, BadLabels, UnknownAnalysis) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {labels}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0
