"""Unlucky and hostile inputs: one bad file or line fails alone, with its reason; entries that are
not read are listed with theirs; nothing blocks, nothing is read beyond the limit, and links do
not lead out of the source folder."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batch_pipeline.documents import sources
from batch_pipeline.documents.folder import walk_folder
from batch_pipeline.documents.sources import SourceError, read_file, read_source
from batch_pipeline.documents.vetting import prepare
from batch_pipeline.outcome import DocumentStatus
from batch_pipeline_tests.conftest import WITHOUT_READ_OVERRIDE

# Tests run as root on CI, and root reads any file whatever its mode: dropping the two
# capabilities that let it (setpriv, from util-linux) makes a chmod 000 file unreadable to it too.


def by_name(contents) -> dict:
    return {d.filename: d for d in contents.documents}


def test_a_file_deleted_between_listing_and_reading_fails_alone(tmp_path, monkeypatch):
    for name in ("a.md", "gone.md", "z.md"):
        (tmp_path / name).write_text(f"# {name}")
    listed = walk_folder

    def list_then_delete(folder, rules=None):
        found = listed(folder, rules)
        (tmp_path / "gone.md").unlink()
        return found

    monkeypatch.setattr(sources, "walk_folder", list_then_delete)
    docs = by_name(read_source(str(tmp_path), None, 1000))
    assert docs["gone.md"].problem is DocumentStatus.unreadable
    assert "No such file" in docs["gone.md"].reason
    assert docs["a.md"].problem is None and docs["z.md"].problem is None


def test_an_unreadable_file_fails_alone(tmp_path):
    (tmp_path / "ok.md").write_text("# fine")
    (tmp_path / "secret.md").write_text("# private")
    (tmp_path / "secret.md").chmod(0)
    code = (
        "import json, sys\nfrom batch_pipeline.documents.sources import read_source\n"
        "docs = read_source(sys.argv[1], None, 1000).documents\n"
        "print(json.dumps({d.filename: [d.problem, d.reason] for d in docs}))"
    )
    done = subprocess.run(
        [*WITHOUT_READ_OVERRIDE, sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    docs = json.loads(done.stdout)
    assert docs["ok.md"] == [None, ""]
    assert docs["secret.md"][0] == "unreadable" and "Permission denied" in docs["secret.md"][1]


def test_a_file_name_that_is_not_utf8_is_kept_printable(tmp_path):
    os.close(os.open(os.fsencode(tmp_path) + b"/caf\xe9.md", os.O_CREAT | os.O_WRONLY))
    with open(os.fsencode(tmp_path) + b"/caf\xe9.md", "wb") as f:
        f.write(b"# menu")
    (doc,) = read_source(str(tmp_path), None, 1000).documents
    assert doc.filename == "caf\\xe9.md" and doc.problem is None
    doc.filename.encode("utf-8")  # storable


def test_lone_surrogates_in_jsonl_and_inline_documents_fail_alone(tmp_path):
    path = tmp_path / "batch.jsonl"
    lines = [
        {"filename": "ok.md", "markdown_content": "# fine"},
        {"filename": "bad \ud800.md", "markdown_content": "# name only"},
        {"filename": "c.md", "markdown_content": "bad \ud800 text"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    docs = by_name(read_source(str(path), None, 1000))
    assert docs["ok.md"].problem is None
    assert docs["bad \\ud800.md"].problem is None  # the name is made printable, the text is fine
    assert docs["batch.jsonl:3"].problem is DocumentStatus.invalid_record
    assert "not valid Unicode" in docs["batch.jsonl:3"].reason
    inline = by_name(read_source(None, [("ok.md", "# ok"), ("x \ud800.md", "bad \udfff")], 1000))
    assert inline["ok.md"].problem is None
    assert inline["x \\ud800.md"].problem is DocumentStatus.invalid_record


def test_a_deeply_nested_jsonl_line_is_an_invalid_record(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "[" * 100_000 + "]" * 100_000 + "\n" + json.dumps({"filename": "a.md", "markdown_content": "# A"}) + "\n"
    )
    docs = by_name(read_source(str(path), None, 1_000_000))
    assert docs["batch.jsonl:1"].problem is DocumentStatus.invalid_record
    assert "nested too deeply" in docs["batch.jsonl:1"].reason
    assert docs["a.md"].problem is None


def test_proc_as_source_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOTS", "/proc")  # a deployment that allows it
    with pytest.raises(SourceError, match="holds no documents"):
        read_source("/proc", None, 1000)


def run_with_deadline(function, seconds: float):
    """function() in a thread, failing the test if it is still running after seconds (it blocked)."""
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = function()
        except Exception as e:
            outcome["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_fifos_never_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(SourceError, match="not a regular file"):
        run_with_deadline(lambda: read_source(str(tmp_path / "pipe.jsonl"), None, 1000), 10)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.md").write_text("# A")
    os.mkfifo(folder / "b.md")
    contents = run_with_deadline(lambda: read_source(str(folder), None, 1000), 10)
    assert [d.filename for d in contents.documents] == ["a.md"]
    assert [str(s) for s in contents.skipped] == ["b.md: a FIFO (named pipe)"]
    fifo_swapped_in = run_with_deadline(lambda: read_file("b.md", folder / "b.md", 1000), 10)
    assert fifo_swapped_in.problem is DocumentStatus.unreadable and "not a regular file" in fifo_swapped_in.reason


def bytes_read_by_this_process() -> int:
    """Bytes this process has read through read() calls, as Linux counts them."""
    counters = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(counters["rchar"])


def test_limits_bound_what_is_read(tmp_path):
    sparse = tmp_path / "huge.md"
    with sparse.open("wb") as f:
        f.truncate(20 * 1024**3)  # 20 GiB, sparse
    read_before = bytes_read_by_this_process()
    (doc,) = read_source(str(tmp_path), None, 1000).documents
    assert bytes_read_by_this_process() - read_before < 10 * 1024**2  # not the 20 GiB
    assert doc.problem is DocumentStatus.too_large and doc.size_bytes == 20 * 1024**3
    proc = read_file("status", Path("/proc/self/status"), 10)  # reports size 0
    assert proc.problem is DocumentStatus.too_large and "more than 10 bytes" in proc.reason
    path = tmp_path / "batch.jsonl"
    path.write_text(
        json.dumps({"filename": "big.md", "markdown_content": "x" * 5000})
        + "\n"
        + json.dumps({"filename": "a.md", "markdown_content": "# A"})
        + "\n"
    )
    docs = by_name(read_source(str(path), None, 1000))
    assert docs["batch.jsonl:1"].problem is DocumentStatus.too_large and docs["a.md"].problem is None
    inline = by_name(read_source(None, [("big.md", "x" * 5000), ("a.md", "# A")], 1000))
    assert inline["big.md"].problem is DocumentStatus.too_large and inline["a.md"].problem is None


def test_links_do_not_lead_out_of_the_folder_unless_allowed(tmp_path):
    folder, outside = tmp_path / "src", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0")
    (folder / "a.md").write_text("# A")
    (folder / "passwd.txt").symlink_to(outside / "passwd.txt")
    (folder / "inside.md").symlink_to(folder / "a.md")
    (folder / "broken.md").symlink_to(folder / "missing.md")
    (folder / "loop.md").symlink_to(folder / "loop.md")
    (folder / "up").symlink_to(folder)
    contents = read_source(str(folder), None, 1000)
    assert [d.filename for d in contents.documents] == ["a.md", "inside.md"]
    reasons = {s.name: s.reason for s in contents.skipped}
    assert "out of the folder" in reasons["passwd.txt"]
    assert "broken" in reasons["broken.md"] and "loop" in reasons["loop.md"]
    assert "link to a folder" in reasons["up"]
    followed = read_source(str(folder), None, 1000, follow_symlinks=True)
    assert "passwd.txt" in [d.filename for d in followed.documents]
    assert "already walked" in {s.name: s.reason for s in followed.skipped}["up"]


def test_an_unlistable_folder_is_skipped_with_its_reason(tmp_path):
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "b.md").write_text("# B")
    (tmp_path / "closed").chmod(0)
    code = (
        "import sys\nfrom batch_pipeline.documents.sources import read_source\n"
        "c = read_source(sys.argv[1], None, 1000)\n"
        "print([d.filename for d in c.documents], [str(s) for s in c.skipped])"
    )
    try:
        done = subprocess.run(
            [*WITHOUT_READ_OVERRIDE, sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        (tmp_path / "closed").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a.md'] ['closed: cannot list the folder: Permission denied']"


def test_every_read_document_can_be_prepared(tmp_path):
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / "gone.md").symlink_to(tmp_path / "nothing")
    for doc in read_source(str(tmp_path), None, 1000).documents:
        assert prepare("p", doc).document_id
