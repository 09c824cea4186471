"""Costs of unlucky and hostile inputs (issue 10): one line with many findings, one very long
line of URLs, a 20 GiB sparse file in a source folder. Prints JSON figures.

    python -m benchmarks.hostile
"""

import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from batch_pipeline.analysis.content_compliance import analyse
from batch_pipeline.documents.sources import read_source


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return round(time.perf_counter() - started, 2), result


def main() -> dict:
    emails = " ".join(f"user{i}@example.com" for i in range(72_000))
    urls = " ".join(f"https://example.com/p/{i}" for i in range(30_000))
    email_seconds, email_result = timed(lambda: analyse(emails))
    url_seconds, _ = timed(lambda: analyse(urls))
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, {"BATCH_PIPELINE_SOURCE_ROOTS": folder}):
        with (Path(folder) / "huge.md").open("wb") as f:
            f.truncate(20 * 1024**3)
        sparse_seconds, contents = timed(lambda: read_source(folder, None, 1_000_000))
    figures = {
        "line_72000_emails": {"bytes": len(emails), "seconds": email_seconds, "findings": len(email_result.findings)},
        "line_30000_urls": {"bytes": len(urls), "seconds": url_seconds},
        "sparse_20_gib_file": {"seconds": sparse_seconds, "status": contents.documents[0].problem.value},
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
