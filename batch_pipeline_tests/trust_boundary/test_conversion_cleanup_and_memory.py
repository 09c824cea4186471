"""A conversion leaves nothing behind (no temporary file, no converter process), however it ends,
and keeps its temporary files where only the pipeline's user can read them; each conversion worker
is held to the memory the deployment allows, and a file that needs more fails alone."""

import contextlib
import io
import os
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from batch_pipeline import settings
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.registration import read_batch
from batch_pipeline.batch.request import BatchRequest, FailurePolicy
from batch_pipeline.context import ProcessingContext
from batch_pipeline.conversion import pool
from batch_pipeline.conversion.limits import Conversion, ConversionLimits
from batch_pipeline.conversion.pool import convert_files
from batch_pipeline.outcome import DocumentStatus
from testbed import conversion_fixtures as fixtures

# Tesseract reads this for several seconds.
SLOW_SCAN_LINES = [f"Line {i} of a long scanned letter, read by OCR line after line" for i in range(150)]


@pytest.fixture
def system_tmp(tmp_path, monkeypatch) -> Path:
    """The system's temporary folder, as this process and the workers it starts see it: one of
    this test's own, so what others run at the same time does not show in it."""
    folder = tmp_path / "system-tmp"
    folder.mkdir(mode=0o755)
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def processes_naming(folder: Path) -> list[str]:
    """The command lines of live processes with a path under folder among their arguments, as
    Tesseract's input file is (a killed process's zombie has none)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            arguments = cmdline.read_bytes().decode(errors="replace").split("\0")
            if any(argument.startswith(f"{folder}/") for argument in arguments):
                found.append(" ".join(arguments))
    return found


def wait_for_none(folder: Path, seconds: float = 1.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (running := processes_naming(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def test_a_conversion_stopped_at_its_time_limit_leaves_no_file_and_no_converter_process(tesseract, system_tmp):
    """A conversion killed at its time limit in the middle of OCR leaves no temporary file (the
    image pytesseract hands Tesseract, readable by anyone) and no Tesseract process behind."""
    files = [(fixtures.png_scan(SLOW_SCAN_LINES), ".png"), (fixtures.text_pdf(["quick"]), ".pdf")]
    # A second: Tesseract has started by then, and pytesseract's own limit (a second from that start,
    # at least) has not stopped it first.
    stopped, quick = convert_files(files, ConversionLimits(timeout_seconds=1, processes=2))
    assert stopped.problem is DocumentStatus.conversion_failed
    assert "longer than 1 s (conversion_timeout_seconds)" in stopped.reason
    assert quick.text == "quick"
    assert sorted(system_tmp.iterdir()) == []
    assert wait_for_none(system_tmp) == []


def test_a_stopped_batch_stops_its_converters_at_once_and_leaves_nothing_behind(tesseract, system_tmp):
    """A batch stopped while Tesseract reads a scan (the run is terminated: KeyboardInterrupt)
    stops at once, without waiting for the conversion, and leaves no file and no process."""
    interrupted_at = []

    def interrupt_once_tesseract_runs(main_thread: int) -> None:
        deadline = time.monotonic() + 30
        while not processes_naming(system_tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        if processes_naming(system_tmp):
            interrupted_at.append(time.monotonic())
            signal.pthread_kill(main_thread, signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_tesseract_runs, args=(threading.get_ident(),))
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            convert_files([(fixtures.png_scan(SLOW_SCAN_LINES), ".png")], ConversionLimits(processes=1))
        stopped_after = time.monotonic() - interrupted_at[0]
    finally:
        watcher.join()
    assert stopped_after < 2  # reading the scan takes several seconds more
    assert sorted(system_tmp.iterdir()) == []
    assert wait_for_none(system_tmp) == []


def test_a_conversion_keeps_its_temporary_files_in_a_folder_only_the_pipeline_user_can_open(
    tmp_path, system_tmp, monkeypatch
):
    """A conversion's temporary files (the image pytesseract writes for Tesseract) are in a folder
    of its own with mode 0700, not in the shared temporary folder; a conversion that ends normally
    leaves nothing behind either."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    tesseract = fake_bin / "tesseract"  # reports, as its text, the folder of the input file it is given
    tesseract.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "tesseract 5.3.0"; exit 0; fi\n'
        'stat -c "%a %n" "$(dirname "$1")" > "$2.txt"\n'
    )
    tesseract.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin), prepend=os.pathsep)
    (conversion,) = convert_files([(fixtures.png_scan(["Card"]), ".png")], ConversionLimits(processes=1))
    mode, folder = conversion.text.split(" ", 1)
    assert mode == "700"
    assert Path(folder).is_relative_to(system_tmp) and Path(folder) != system_tmp
    assert not Path(folder).exists() and sorted(system_tmp.iterdir()) == []


def docx_with_one_long_run(megabytes: int) -> bytes:
    """A small DOCX (about 5 KB per MB of text) whose single text run expands to that many MB."""
    template = fixtures.docx("PLACEHOLDER", [["-"]])
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(template)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target,
    ):
        for name in source.namelist():
            data = source.read(name)
            if name != "word/document.xml":
                target.writestr(name, data)
                continue
            before, after = data.split(b"PLACEHOLDER")
            with target.open(name, "w", force_zip64=True) as part:
                part.write(before)
                for _ in range(megabytes):
                    part.write(b"a" * 1024 * 1024)
                part.write(after)
    return out.getvalue()


def test_a_file_that_needs_more_memory_than_the_deployment_allows_fails_alone_as_too_large():
    """Whoever may put a file in a batch cannot make a conversion worker take more memory than
    the deployment allows: a 2 MB DOCX whose one text run expands to 400 MB (under the 1 GB
    archive check) ends too_large, naming the setting, and the batch's other DOCX converts."""
    files = [(docx_with_one_long_run(400), ".docx"), (fixtures.docx("Write to mary@example.net", [["-"]]), ".docx")]
    big, normal = convert_files(files, ConversionLimits(processes=2, timeout_seconds=30, memory_mb=1024))
    assert big.problem is DocumentStatus.too_large
    assert big.reason == "converting it needed more than 1024 MB (BATCH_PIPELINE_CONVERSION_MEMORY_MB)"
    assert normal.problem is None and "mary@example.net" in normal.text


def test_the_memory_limit_is_the_deployments_setting(tmp_path, monkeypatch):
    """Whoever may launch a run cannot choose the conversion workers' memory limit: it comes from
    $BATCH_PIPELINE_CONVERSION_MEMORY_MB (4096 MB by default), which the batch's conversions get."""
    used = []

    def record_limits(files, limits: ConversionLimits) -> list[Conversion]:
        used.append(limits.memory_mb)
        return [Conversion("text", "fake") for _ in files]

    monkeypatch.setattr(pool, "convert_files", record_limits)
    (tmp_path / "review.docx").write_bytes(b"not read by the fake")
    request = BatchRequest(
        project="p", source=str(tmp_path), documents=None, partition_size=None, force=False,
        max_document_bytes=10_000, follow_symlinks=False, analysis_timeout_seconds=60,
        on_document_failure=FailurePolicy.succeed,
        context=ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue()),
    )  # fmt: skip
    monkeypatch.delenv(settings.CONVERSION_MEMORY_ENV, raising=False)
    read_batch(request)
    monkeypatch.setenv(settings.CONVERSION_MEMORY_ENV, "1536")
    read_batch(request)
    assert used == [4096, 1536]
    for wrong in ("0", "-1", "4 GB", "1.5"):
        monkeypatch.setenv(settings.CONVERSION_MEMORY_ENV, wrong)
        with pytest.raises(ValueError, match="BATCH_PIPELINE_CONVERSION_MEMORY_MB"):
            settings.conversion_memory_mb()
