"""Conversion at ingest (issue 14): each format's cost on one core, a mixed batch through one
worker process and through one per core (start-up included), what conversion adds to a run's
registration, and what a re-run costs. Prints JSON.

    python -m benchmarks.conversion [--files-per-format 40] [--scans 10]

Needs the test extra (the files are written with fpdf2, python-docx, python-pptx, openpyxl) and
Tesseract for the scans.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import dagster as dg
from faker import Faker

from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.conversion.pool import convert_files, convert_in_worker
from batch_pipeline.definitions import defs
from testbed import conversion_fixtures as fixtures


def realistic_files(per_format: int, scans: int, seed: int = 14) -> dict[str, list[bytes]]:
    """Business-looking files, each distinct (so none is deduplicated away)."""
    fake = Faker("en_US")
    Faker.seed(seed)

    def lines(n: int) -> list[str]:
        return [fake.sentence(nb_words=14) for _ in range(n)] + [f"Contact {fake.email()} or {fake.phone_number()}"]

    return {
        ".pdf": [fixtures.text_pdf(lines(60)) for _ in range(per_format)],  # about 3 pages each
        ".docx": [fixtures.docx(fake.paragraph(12), [[fake.name(), fake.iban()] for _ in range(20)]) for _ in range(per_format)],
        ".pptx": [fixtures.pptx(fake.catch_phrase(), fake.paragraph(6), fake.paragraph(4)) for _ in range(per_format)],
        ".xlsx": [fixtures.xlsx([[fake.name(), fake.email(), fake.iban()] for _ in range(200)]) for _ in range(per_format)],
        ".html": [fixtures.html(" ".join(fake.paragraphs(20))) for _ in range(per_format)],
        ".eml": [fixtures.eml(fake.email(), fake.paragraph(10), "notes.txt", fake.text().encode()) for _ in range(per_format)],
        "scanned .pdf": [fixtures.scanned_pdf(lines(12)) for _ in range(scans)],
    }  # fmt: skip


def per_format(files: dict[str, list[bytes]]) -> dict:
    """Each format's conversion cost on one core, in this process (no worker, no start-up)."""
    rates = {}
    for label, datas in files.items():
        suffix = label.split()[-1]
        started = time.perf_counter()
        conversions = [convert_in_worker(data, suffix, ConversionLimits()) for data in datas]
        seconds = time.perf_counter() - started
        rates[label] = {
            "files": len(datas),
            "ms_per_file": round(1000 * seconds / max(len(datas), 1), 1),
            "failed": sum(c.problem is not None for c in conversions),
        }
    return rates


def pool_seconds(files: dict[str, list[bytes]], processes: int) -> float:
    """Every file, formats mixed, through the worker processes as a registration converts them."""
    mixed = [(data, label.split()[-1]) for label, datas in files.items() for data in datas]
    started = time.perf_counter()
    convert_files(mixed, ConversionLimits(processes=processes))
    return round(time.perf_counter() - started, 2)


def job_seconds(instance: dg.DagsterInstance, folder: Path, force: bool = False) -> tuple[float, str]:
    config = {
        "project": "bench",
        "source": str(folder),
        "force": force,
        "context": {"model_key": "content_compliance", "ai_model": "local"},
    }
    job = defs.resolve_job_def("document_batch_job")
    started = time.perf_counter()
    result = job.execute_in_process(
        run_config={"ops": {"create_document_records": {"config": config}}}, instance=instance
    )
    seconds = time.perf_counter() - started
    registration = next(e for e in result.all_events if e.is_step_success and e.step_key == "create_document_records")
    return round(seconds, 2), f"{registration.event_specific_data.duration_ms / 1000:.2f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files-per-format", type=int, default=40)
    parser.add_argument("--scans", type=int, default=10)
    args = parser.parse_args(argv)
    files = realistic_files(args.files_per_format, args.scans)
    cores = os.cpu_count() or 1
    one, all_cores = pool_seconds(files, 1), pool_seconds(files, cores)
    figures: dict = {
        "cores": cores,
        "per_format_one_core": per_format(files),
        "all_files_one_process_seconds": one,
        f"all_files_{cores}_processes_seconds": all_cores,
        "speed_up": round(one / all_cores, 2),
    }
    with (
        tempfile.TemporaryDirectory() as workdir,
        # The data folder beside the files, not around them: no source reads the deployment's own data.
        mock.patch.dict(
            os.environ, {"BATCH_PIPELINE_HOME": f"{workdir}/pipeline_home", "BATCH_PIPELINE_SOURCE_ROOTS": workdir}
        ),
    ):
        folder = Path(workdir) / "drive"
        folder.mkdir()
        for label, datas in files.items():
            suffix = label.split()[-1]
            for i, data in enumerate(datas):
                (folder / f"{label.replace(' ', '_').strip('.')}_{i:04d}{suffix}").write_bytes(data)
        with dg.instance_for_test() as instance:
            first, first_registration = job_seconds(instance, folder)
            rerun, rerun_registration = job_seconds(instance, folder, force=True)
    figures["job"] = {
        "files": sum(len(d) for d in files.values()),
        "first_run_seconds": first,
        "first_run_registration_seconds": first_registration,
        "rerun_seconds": rerun,
        "rerun_registration_seconds_(stored_conversions)": rerun_registration,
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
