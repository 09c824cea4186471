"""The benchmark's smoke version: every scenario runs end to end on tiny inputs, so the benchmark
cannot rot. It asserts that the benchmark works and reports sane figures, not a speed."""

import os

import pytest

from benchmarks.run import main


@pytest.fixture
def smoke(tmp_path, redis_url, monkeypatch):
    """benchmarks.run on tiny inputs, some of its scenarios at a time (each group a test, so that
    xdist runs them side by side); its report."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("matplotlib", reason="the sweep plot needs the bench extra: pip install -e '.[bench]'")
    monkeypatch.setenv("BATCH_PIPELINE_BENCH_REDIS_URL", redis_url)
    return lambda *scenarios, options=(): main(["--smoke", "--only", ",".join(scenarios), *options])


def test_throughput_and_cached_rerun_benchmark_smoke(smoke):
    report = smoke("throughput", "rerun", options=["--repeat", "2"])
    throughput = report["throughput"]
    assert throughput["job_statuses"] == {"ok": throughput["documents"]}
    assert throughput["a_physical_limit_docs_per_s"] > 0 and throughput["c_over_b"] > 0
    assert len(report["throughput_repeats"]["c_over_b"]) == 2 and report["throughput_repeats"]["median"] > 0
    assert report["cached_rerun"]["llm_calls"] == 0
    assert report["cached_rerun"]["statuses"] == {"ok": throughput["documents"]}


def test_rate_limit_benchmark_smoke(smoke):
    report = smoke("ratelimit", "learned", "two_runs")
    limited = report["rate_limited"]
    assert limited["failed_documents"] == 0 and limited["achieved_rpm"] <= limited["rpm_limit"]
    for name in ("learned_limit", "two_runs_shared_redis"):
        figures = report[name]
        assert figures["ok_documents"] == figures["documents"] and figures["lost_documents"] == 0
        assert figures["fraction_of_limit_from_first_request"] > 0 and figures["responses_429_percent"] >= 0


def test_faults_scale_and_sweep_benchmark_smoke(smoke, tmp_path):
    report = smoke("faults", "scale", "sweep", options=["--plot", str(tmp_path / "sweep.png")])
    assert report["faults"]["lost"] == 0
    scale = report["scale"]["full"]
    assert scale["statuses"] == {"ok": scale["documents"]} and scale["peak_rss_mib"] > 0 and scale["dagster_events"] > 0
    assert [p["concurrency"] for p in report["sweep"]["points"]] == [8]
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_conversion_benchmark_smoke(tesseract, monkeypatch):
    from benchmarks.conversion import main as conversion_main

    figures = conversion_main(["--files-per-format", "1", "--scans", "1"])
    assert all(r["failed"] == 0 and r["ms_per_file"] > 0 for r in figures["per_format_one_core"].values())
    assert figures["all_files_one_process_seconds"] > 0 and figures["speed_up"] > 0
    assert figures["job"]["files"] == 7


def test_detection_quality_benchmark_smoke():
    from benchmarks.detection_quality import main as detection_main

    figures = detection_main(["--documents", "60"])
    assert set(figures) >= {"email", "phone", "payment_card", "iban", "ssn", "secret", "documents_per_second"}
    assert figures["email"]["recall"] == 1.0 and figures["documents_per_second"] > 0


@pytest.fixture
def workers_smoke(broker, redis_url, postgres_server, monkeypatch):
    """benchmarks.workers on tiny inputs, one scenario at a time; its figures."""
    from benchmarks import workers

    monkeypatch.setattr(workers, "BROKER_URL", broker)
    monkeypatch.setattr(workers, "BACKEND_URL", redis_url)
    sizes = ["--documents", "300", "--paragraphs", "2", "--partition-size", "100", "--llm-documents", "60",
             "--llm-latency", "0.05"]  # fmt: skip
    return lambda scenario: workers.main([*sizes, "--quick", "--only", scenario])


def test_offline_workers_benchmark_smoke(workers_smoke):
    offline = workers_smoke("offline")["offline"]
    assert offline["per_partition_overhead_seconds_median"] >= 0 and offline["paragraphs_per_document"] == 2
    assert offline["speed_up_a_core_each_vs_confined_to_one_core"] > 0
    assert offline["analysis_ms_per_document_on_the_workers"] > 0


def test_llm_workers_benchmark_smoke(workers_smoke):
    llm = workers_smoke("llm")["llm"]
    assert llm["statuses_in_process"] == llm["statuses_celery"] == {"ok": 60}
    assert llm["in_process_over_plain"] > 0 and llm["celery_over_plain"] > 0
