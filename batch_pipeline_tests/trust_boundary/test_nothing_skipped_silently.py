"""Nothing in a source is skipped silently: hidden files and folders are read (a compliance scan's
.env files above all); version-control folders, the inbox's own snapshots and what the deployment
excludes by pattern are listed as skipped, each with its reason, and counted."""

import json

from batch_pipeline.documents.sources import read_source
from batch_pipeline_tests.conftest import batch_config, rows_of, run_job

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def hidden_source(folder):
    (folder / ".hidden").mkdir(parents=True)
    (folder / ".secret.md").write_text(f"aws_access_key_id = {AWS_KEY}\n")
    (folder / ".hidden" / "notes.md").write_text("Employee SSN: 536-90-4399\n")
    (folder / ".env").write_text("DB_PASSWORD=Sup3rS3cretPassw0rd!\n")
    (folder / "a.md").write_text("# Plain\n")
    for vcs in (".git", ".hg", ".svn"):
        (folder / vcs).mkdir()
        (folder / vcs / "config.md").write_text("url = https://example.com/repo.git\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.md").write_text("generated\n")
    (folder / "debug.log.md").write_text("noise\n")
    return folder


def test_hidden_files_are_read_and_vcs_and_excluded_entries_are_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_PIPELINE_EXCLUDE", "build, *.log.md")
    contents = read_source(str(hidden_source(tmp_path / "src")), None, 10_000)
    assert sorted(d.filename for d in contents.documents) == [".env", ".hidden/notes.md", ".secret.md", "a.md"]
    reasons = {s.name: s.reason for s in contents.skipped}
    assert set(reasons) == {".git", ".hg", ".svn", "build", "debug.log.md"}
    assert all(reasons[vcs] == "a version-control folder" for vcs in (".git", ".hg", ".svn"))
    assert "'build'" in reasons["build"] and "'*.log.md'" in reasons["debug.log.md"]
    assert all("BATCH_PIPELINE_EXCLUDE" in reasons[name] for name in ("build", "debug.log.md"))


def test_a_compliance_run_finds_what_hidden_files_hold_and_counts_what_it_skipped(tmp_path, pipeline_home, instance):
    """The audit's reproduction: .secret.md (an AWS key) and .hidden/notes.md (an SSN) got no row,
    no skip reason and skipped_entry_count 0."""
    result = run_job(instance, batch_config(str(hidden_source(tmp_path / "src"))))
    batch_output = next(
        e for e in result.all_events if e.is_successful_output and e.step_key == "create_document_records"
    )
    metadata = batch_output.event_specific_data.metadata
    assert metadata["skipped_entry_count"].value == 3
    assert sorted(s.split(":")[0] for s in metadata["skipped_entries"].value) == [".git", ".hg", ".svn"]
    results = {name: json.loads(row.result) for name, row in rows_of(result.run_id).iterrows() if row.result}
    assert any(f["category"] == "secret" for f in results[".secret.md"]["findings"])
    assert any(f["category"] == "ssn" for f in results[".hidden/notes.md"]["findings"])
    assert any(f["category"] == "secret" for f in results[".env"]["findings"])
