"""Detection quality of the offline content_compliance analyser (issue 14) on the held-out
labelled set (Faker, seed 2026): per category, documents, recall and precision; clean and decoy
documents; documents per second on one core. Prints JSON.

    python -m benchmarks.detection_quality [--documents 1000] [--analyser-file OLD.py]

--analyser-file measures another version of content_compliance.py (e.g. `git show
e6e3272:batch_pipeline/analysis/content_compliance.py > /tmp/before.py`), for before/after figures.
"""

import argparse
import importlib.util
import json
import time

from testbed.labelled_set import HELD_OUT_SEED, evaluate, labelled_documents


def _analyser(path: str | None):
    if path is None:
        from batch_pipeline.analysis.content_compliance import analyse

        return analyse
    spec = importlib.util.spec_from_file_location("content_compliance_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.analyse


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--analyser-file")
    args = parser.parse_args(argv)
    analyse = _analyser(args.analyser_file)
    documents = labelled_documents(HELD_OUT_SEED, args.documents)
    analyse(documents[0].text)  # libraries loaded before timing
    started = time.perf_counter()
    figures = evaluate(analyse, documents)
    seconds = time.perf_counter() - started
    figures = {k: ({m: round(v, 3) for m, v in f.items()} if isinstance(f, dict) else f) for k, f in figures.items()}
    figures["documents_per_second"] = round(2 * len(documents) / seconds, 1)  # evaluate analyses each document twice
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
