"""Whoever may launch a run cannot read a file outside the folders the deployment allows
($BATCH_PIPELINE_SOURCE_ROOTS): absolute paths, ``..``, ``~`` and links are resolved first, the
refusal comes at launch with nothing written and no content echoed, and ``follow_symlinks`` follows
links only into the allowed folders."""

from pathlib import Path

import pytest

from batch_pipeline import settings
from batch_pipeline.documents.sources import SourceError, read_source, source_problem
from batch_pipeline_tests.conftest import batch_config, run_job, stored_document_count

MARKER = "outside-content-5f2a"


@pytest.fixture
def layout(tmp_path, monkeypatch) -> dict[str, Path]:
    """An allowed folder holding documents, and a folder outside it holding a secret-looking file."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "docs").mkdir(parents=True)
    (allowed / "docs" / "a.md").write_text("# A\n\nmail a@example.com")
    outside.mkdir()
    (outside / "secret.md").write_text(f"# {MARKER}\n\npassword = Hunter2Hunter2!")
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOTS", str(allowed))
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOT", str(allowed))
    monkeypatch.setenv("BATCH_PIPELINE_INBOX", str(tmp_path / "inbox"))
    return {"allowed": allowed, "outside": outside}


def escapes(layout: dict[str, Path], monkeypatch) -> list[str]:
    home = layout["outside"].parent / "home"
    (home / "notes").mkdir(parents=True)
    (home / "notes" / "n.md").write_text(MARKER)
    monkeypatch.setenv("HOME", str(home))
    (layout["allowed"] / "link").symlink_to(layout["outside"])
    return [
        str(layout["outside"]),  # absolute
        "../outside",  # relative to the source root
        "docs/../../outside",
        "~/notes",
        "link",  # a link inside the allowed folder that leads out of it
        str(layout["outside"] / "missing"),  # refused the same way: existence is not revealed
    ]


def test_sources_outside_the_allowed_roots_are_refused_naming_the_setting(layout, monkeypatch):
    for source in escapes(layout, monkeypatch):
        problem = source_problem(source, None)
        assert "outside the folders this deployment allows" in problem, source
        assert "BATCH_PIPELINE_SOURCE_ROOTS" in problem and MARKER not in problem
        with pytest.raises(SourceError):
            read_source(source, None, 1000)
    assert source_problem("docs", None) == ""
    assert [d.filename for d in read_source("docs", None, 1000).documents] == ["a.md"]


def test_a_run_on_a_source_outside_the_roots_fails_at_launch_with_nothing_written(
    layout, monkeypatch, pipeline_home, instance
):
    result = run_job(instance, batch_config(str(layout["outside"])), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "BATCH_PIPELINE_SOURCE_ROOTS" in failure.event_specific_data.error.message
    logs = [e.message or "" for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    assert not any(MARKER in message for message in logs)
    assert stored_document_count() == 0


def test_follow_symlinks_follows_links_only_into_allowed_roots(layout, monkeypatch, tmp_path):
    second = tmp_path / "second_root"
    second.mkdir()
    (second / "shared.md").write_text("# shared")
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOTS", f"{layout['allowed']}:{second}")
    docs = layout["allowed"] / "docs"
    (docs / "secret.md").symlink_to(layout["outside"] / "secret.md")
    (docs / "out").symlink_to(layout["outside"])
    (docs / "shared.md").symlink_to(second / "shared.md")
    contents = read_source("docs", None, 1000, follow_symlinks=True)
    assert [d.filename for d in contents.documents] == ["a.md", "shared.md"]
    reasons = {s.name: s.reason for s in contents.skipped}
    assert "BATCH_PIPELINE_SOURCE_ROOTS" in reasons["secret.md"] and "BATCH_PIPELINE_SOURCE_ROOTS" in reasons["out"]
    assert MARKER not in str(contents)


def test_the_default_roots_are_the_source_root_and_the_triggers_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("BATCH_PIPELINE_SOURCE_ROOTS")
    monkeypatch.setenv("BATCH_PIPELINE_SOURCE_ROOT", str(tmp_path / "repo"))
    for name in ("BATCH_PIPELINE_INBOX", "BATCH_PIPELINE_SWEEP_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_HOME", str(tmp_path / "home"))
    home = (tmp_path / "home").resolve()
    assert settings.source_roots() == [(tmp_path / "repo").resolve(), home / "inbox", home / "sweep"]
    # Not the data folder as a whole: it holds every run's reports and the store.
    assert "own data" in source_problem(str(tmp_path / "home" / "reports"), None)


def test_the_deployments_own_data_is_never_a_source_even_inside_an_allowed_root(layout, monkeypatch):
    """The data folder (store, every run's reports) and $DAGSTER_HOME are refused as sources and
    skipped inside a source folder (make dev's source root, the repository, holds .dagster_home)."""
    home = layout["allowed"] / ".dagster_home"
    (home / "batch_pipeline" / "reports" / "run-1").mkdir(parents=True)
    (home / "batch_pipeline" / "reports" / "run-1" / "summary.md").write_text(MARKER)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("BATCH_PIPELINE_HOME", str(home / "batch_pipeline"))
    assert "the deployment's own data" in source_problem(".dagster_home/batch_pipeline/reports", None)
    contents = read_source(".", None, 1000)
    assert MARKER not in str([d.content for d in contents.documents])
    assert "the deployment's own data" in {s.name: s.reason for s in contents.skipped}[".dagster_home"]


def test_a_file_swapped_for_a_link_after_the_listing_is_not_read(layout, monkeypatch):
    """Between listing the folder and reading it, a file replaced by a link out of the allowed
    folders (or a subfolder by a link to one) fails alone as unreadable; its target is not read."""
    from batch_pipeline.documents import sources

    docs = layout["allowed"] / "docs"
    (docs / "sub").mkdir()
    (docs / "sub" / "secret.md").write_text("# inside")
    listed = sources.walk_folder

    def list_then_swap(folder, rules=None):
        found = listed(folder, rules)
        (docs / "a.md").unlink()
        (docs / "a.md").symlink_to(layout["outside"] / "secret.md")
        (docs / "sub" / "secret.md").unlink()
        (docs / "sub").rmdir()
        (docs / "sub").symlink_to(layout["outside"])
        return found

    monkeypatch.setattr(sources, "walk_folder", list_then_swap)
    documents = {d.filename: d for d in read_source("docs", None, 1000).documents}
    assert set(documents) == {"a.md", "sub/secret.md"}
    for document in documents.values():
        assert document.content is None and "leads out" in document.reason
    assert MARKER not in str(documents)


def test_a_link_out_of_the_folder_is_skipped_without_revealing_its_target(layout):
    docs = layout["allowed"] / "docs"
    (docs / "passwd.md").symlink_to(layout["outside"] / "secret.md")
    (docs / "gone.md").symlink_to(layout["outside"] / "no-such-file.md")
    reasons = {s.name: s.reason for s in read_source("docs", None, 1000).skipped}
    assert reasons["passwd.md"] == reasons["gone.md"]  # existence outside is not revealed
    assert str(layout["outside"]) not in str(reasons)


def test_a_link_planted_where_the_inbox_copies_a_batch_is_not_followed(tmp_path):
    """The run key is foreseeable from the files: a link planted at .batches/<run key> pointing out
    of the inbox receives nothing."""
    from batch_pipeline.analysis.registry import catalogue
    from batch_pipeline.context import ProcessingContext
    from batch_pipeline.documents.inbox import SNAPSHOT_DIR, InboxBatch, scan, snapshot

    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "a.md").write_text("# A")
    scanned = scan(inbox)
    batch = InboxBatch(
        project="p",
        context=ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue()),
        priority="normal",
        files=scanned.files,
    )
    (inbox / SNAPSHOT_DIR).mkdir()
    (inbox / SNAPSHOT_DIR / batch.run_key).symlink_to(elsewhere)
    copied = snapshot(inbox, batch, scanned.paths)
    assert copied == (inbox / SNAPSHOT_DIR / batch.run_key).resolve() and (copied / "a.md").read_text() == "# A"
    assert list(elsewhere.iterdir()) == []
