import pytest

from batch_pipeline.documents.inbox import InboxDefaults, InvalidBatchFile, new_or_changed, read_batch_settings, scan


def test_scan_hashes_text_files_and_skips_its_own_snapshots_saying_so(tmp_path):
    (tmp_path / "a.md").write_text("A")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("B")
    (tmp_path / "batch.yaml").write_text("ai_model: local")
    (tmp_path / ".batches" / "x").mkdir(parents=True)
    (tmp_path / ".batches" / "x" / "a.md").write_text("A")
    scanned = scan(tmp_path)
    assert list(scanned.files) == ["a.md", "sub/b.txt"]
    assert [(s.name, s.reason) for s in scanned.skipped] == [
        (".batches", "the inbox's own copies of the batches it launched")
    ]


def test_new_or_changed():
    assert new_or_changed({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "old"}) == {"b": "2", "c": "3"}


def test_batch_yaml_overrides_defaults(tmp_path):
    (tmp_path / "batch.yaml").write_text(
        "model_key: document_metadata\nai_model: gpt-4.1-mini\ncustom_instructions: Be brief.\npriority: high\n"
    )
    project, context, priority = read_batch_settings(
        tmp_path, InboxDefaults(project="p", model_key="content_compliance")
    )
    assert (project, context.model_key, context.ai_model, context.custom_instructions, priority) == (
        "p", "document_metadata", "gpt-4.1-mini", "Be brief.", "high",
    )  # fmt: skip


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "model_key: sentiment\nai_model: local\n",
            "unknown model_key 'sentiment'; valid keys: content_compliance, document_metadata",
        ),
        ("model_key: content_compliance\n", "no ai_model"),
        ("model_key: content_compliance\nai_model: local\nmodle: x\n", "unknown keys ['modle']"),
        ("model_key: [unclosed\n", "not valid YAML"),
        ("model_key: content_compliance\nai_model: local\npriority: urgent\n", "priority 'urgent'"),
    ],
)
def test_invalid_batch_yaml_says_what_is_wrong(tmp_path, content, message):
    (tmp_path / "batch.yaml").write_text(content)
    with pytest.raises(InvalidBatchFile, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_batch_settings(tmp_path, InboxDefaults())


def test_scan_skips_links_out_of_the_inbox_fifos_and_unreadable_files_and_snapshot_copies_only_the_rest(tmp_path):
    import os
    import subprocess
    import sys

    from batch_pipeline.analysis.registry import catalogue
    from batch_pipeline.context import ProcessingContext
    from batch_pipeline.documents.inbox import InboxBatch, snapshot
    from batch_pipeline_tests.conftest import WITHOUT_READ_OVERRIDE

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "passwd.txt").write_text("root:x:0:0")
    (inbox / "a.md").write_text("# A")
    (inbox / "passwd.txt").symlink_to(tmp_path / "passwd.txt")
    (inbox / "status.txt").symlink_to("/proc/self/status")
    os.mkfifo(inbox / "pipe.md")
    scanned = scan(inbox)
    assert list(scanned.files) == ["a.md"]
    assert {s.name for s in scanned.skipped} == {"passwd.txt", "status.txt", "pipe.md"}
    context = ProcessingContext(model_key="content_compliance", ai_model="local").pinned(catalogue())
    batch = InboxBatch(project="p", context=context, priority="normal", files=scanned.files)
    copied = snapshot(inbox, batch, scanned.paths)
    assert sorted(p.name for p in copied.rglob("*")) == ["a.md"]

    (inbox / "locked.md").write_text("# private")
    (inbox / "locked.md").chmod(0)
    code = (
        "import sys, pathlib\nfrom batch_pipeline.documents.inbox import scan\n"
        "s = scan(pathlib.Path(sys.argv[1]))\nprint(sorted(s.files), [str(e) for e in s.skipped if 'locked' in e.name])"
    )
    done = subprocess.run(
        [*WITHOUT_READ_OVERRIDE, sys.executable, "-c", code, str(inbox)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a.md'] ['locked.md: cannot read it: Permission denied']"
