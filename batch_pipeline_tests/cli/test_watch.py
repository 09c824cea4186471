"""`batch-pipeline status RUN_ID --watch`: the live view's figures, its exit codes, and a real run
watched from another process until it ends."""

import subprocess
import time

import dagster as dg
import yaml
from rich.console import Console

from batch_pipeline.cli.watch import Snapshot, rate_and_eta, view, watch
from batch_pipeline_tests.conftest import BATCH_PIPELINE, batch_config, dagster_execute, write_corpus


def test_rate_and_eta_come_from_the_documents_finished_while_watching():
    first = Snapshot("STARTED", {"pending": 100}, [], at=10.0)
    later = Snapshot("STARTED", {"pending": 60, "ok": 38, "empty": 2}, ["analyse_partition[p00001]"], at=20.0)
    rate, eta = rate_and_eta(first, later)
    assert rate == 4.0 and eta == 15.0
    assert rate_and_eta(first, first) == (None, None)


def test_the_view_shows_progress_rate_eta_and_the_running_partitions():
    first = Snapshot("STARTED", {"pending": 10}, ["create_document_records"], 0.0)
    middle = Snapshot("STARTED", {"pending": 4, "ok": 6}, ["analyse_partition[p00000]"], 2.0)
    console = Console(record=True, width=120)
    console.print(view("run-1", first, middle))
    text = console.export_text()
    assert "6 of 10 done" in text and "analyse_partition[p00000]" in text
    assert "3.0" in text and "1 s" in text  # 6 documents in 2 s; 4 left


def test_watch_redraws_until_the_run_ends_and_exits_with_its_status():
    script = iter(
        [
            Snapshot("STARTED", {"pending": 10}, ["create_document_records"], 0.0),
            Snapshot("STARTED", {"pending": 4, "ok": 6}, ["analyse_partition[p00000]"], 2.0),
            Snapshot("FAILURE", {"ok": 9, "too_large": 1}, [], 4.0),
        ]
    )
    console = Console(record=True, width=120, force_terminal=True)
    sleeps = []
    assert watch("run-1", lambda: next(script), console=console, sleep=sleeps.append) == 1
    text = console.export_text()
    assert "10 of 10 done" in text and "too_large" in text and "FAILURE" in text
    assert sleeps == [1.0, 1.0]
    canceled = iter([Snapshot("CANCELED", {"pending": 3}, [], 0.0)])
    assert watch("run-2", lambda: next(canceled), console=Console(file=None, width=80)) == 3


def test_watching_a_real_run_from_another_process(tmp_path, shared_store_env):
    corpus = write_corpus(tmp_path / "corpus", 3000)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(batch_config(str(corpus), partition_size=500)))
    home = tmp_path / "dagster_home"
    run = dagster_execute(config, home, shared_store_env)
    try:
        run_id = None
        deadline = time.monotonic() + 60
        while run_id is None and time.monotonic() < deadline:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs()
            run_id = runs[0].run_id if runs else None
            time.sleep(0.2)
        assert run_id, "the run did not start"
        watcher = subprocess.run(
            [BATCH_PIPELINE, "status", run_id, "--watch", "--interval", "0.5"],
            env={**shared_store_env, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        run.communicate(timeout=300)
    assert watcher.returncode == 0, watcher.stderr
    assert "3000 of 3000 done" in watcher.stdout and "SUCCESS" in watcher.stdout
