"""Benchmarks: orchestration cost against the physical limit and a plain asyncio script, rate-limited
throughput, cached re-runs, 100k-document scale and a concurrency sweep. Prints figures; see
docs/benchmarks.md for recorded ones.

    python -m benchmarks.run                 # everything, with the documented sizes (about 15 min)
    python -m benchmarks.run --smoke         # seconds: the same code paths on tiny inputs
    python -m benchmarks.run --only throughput,rerun
    python -m benchmarks.run --only throughput --docs 6000 --repeat 3   # the overhead target's size
"""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.plain import API_KEY, document

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RSS_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(f'MAXRSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); sys.exit(rc)"
)


@dataclass
class Sizes:
    docs: int = 10_000
    latency: float = 0.5
    concurrency: int = 64  # LlmResource's default
    limited_docs: int = 600
    limited_rpm: int = 1200
    limited_tpm: int = 1_500_000
    scale_docs: int = 100_000
    sweep_docs: int = 1000
    sweep_latency: float = 0.2
    sweep: tuple[int, ...] = (8, 16, 32, 64, 128)
    scale_compare: bool = True  # also run a tenth of scale_docs, to see how events grow with documents
    learned_docs: int = 600  # a minute of work at learned_rpm, limits not configured
    learned_rpm: int = 600
    learned_latency: float = 0.2
    fault_docs: int = 60


SMOKE = Sizes(
    docs=60,
    latency=0.05,
    limited_docs=20,
    limited_rpm=600,
    scale_docs=300,
    sweep_docs=40,
    sweep_latency=0.05,
    sweep=(8,),
    scale_compare=False,
    learned_docs=30,
    fault_docs=10,
)


def write_jsonl(path: Path, count: int, first: int = 0) -> Path:
    with path.open("w") as f:
        for i in range(first, first + count):
            f.write(json.dumps(document(i)) + "\n")
    return path


class Server:
    """The loopback OpenAI-compatible test server, in its own process so it does not share a GIL."""

    def __init__(self, workdir: Path, latency: float, rpm: int | None = None, tpm: int | None = None, *flags: str):
        port_file = workdir / f"port-{time.monotonic_ns()}"
        args = [sys.executable, "-m", "testbed.fake_openai_server", "--port-file", str(port_file),
                "--latency", str(latency), "--api-key", API_KEY, *flags]  # fmt: skip
        args += ["--rpm", str(rpm)] if rpm else []
        args += ["--tpm", str(tpm)] if tpm else []
        self.process = subprocess.Popen(args, cwd=REPO_ROOT)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("fake server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/_stats") as response:
            return json.load(response)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def plain_script(url: str, count: int, concurrency: int) -> tuple[float, float]:
    """(b) as a user runs it: (seconds from process start to exit, seconds from first request to last answer)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.plain", url, str(count), str(concurrency)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    return time.perf_counter() - started, float(done.stdout.strip())


def job_config(source: Path, ai_model: str, project: str, llm: dict | None = None) -> dict:
    config = {
        "ops": {
            "create_document_records": {
                "config": {
                    "project": project,
                    "source": str(source),
                    "context": {"model_key": "content_compliance", "ai_model": ai_model},
                }
            }
        }
    }
    if llm is not None:
        config["resources"] = {"llm": {"config": llm}}
    return config


@dataclass
class JobRun:
    seconds: float
    output: str
    max_rss_kb: int | None

    @property
    def run_id(self) -> str:
        return re.search(r"document_batch_job - ([0-9a-f-]{36}) - ", self.output).group(1)

    def registration_rate(self) -> float:
        return float(re.search(r"registered \d+ documents .*? \((\d+) docs/s\)", self.output).group(1))


def run_job(
    workdir: Path, config: dict, name: str, env: dict, measure_rss: bool = False, core: int | None = None
) -> JobRun:
    """(c): the full job via `dagster job execute`, from process start to exit; on that core only (its
    child processes too) when core is given."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [
        str(BIN / "dagster"),
        "job",
        "execute",
        "-m",
        "batch_pipeline.definitions",
        "-j",
        "document_batch_job",
        "-c",
        str(path),
    ]
    if measure_rss:
        command = [sys.executable, "-c", RSS_WRAPPER, *command]
    if core is not None:
        command = ["taskset", "--cpu-list", str(core), *command]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{name}: dagster job execute failed:\n{output[-3000:]}")
    rss = re.search(r"MAXRSS_KB=(\d+)", output)
    return JobRun(seconds, output, int(rss.group(1)) if rss else None)


def environment(workdir: Path, dagster_home: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_PIPELINE_", "DAGSTER_HOME"))}
    # The corpora are written under the system's temporary folder: a source folder this deployment allows.
    env.update(
        BATCH_PIPELINE_HOME=str(workdir / "pipeline_home"),
        OPENAI_API_KEY=API_KEY,
        BATCH_PIPELINE_SOURCE_ROOTS=tempfile.gettempdir(),
    )
    if dagster_home is not None:
        dagster_home.mkdir(exist_ok=True)
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


def statuses(env: dict, run_id: str) -> dict[str, int]:
    from batch_pipeline.store import DocumentStore

    store = DocumentStore(f"sqlite:///{Path(env['BATCH_PIPELINE_HOME']) / 'store.sqlite'}")
    try:
        return store.status_counts(run_id)
    finally:
        store.close()


def throughput_and_rerun(workdir: Path, sizes: Sizes, report: dict, rerun: bool) -> None:
    n, latency, concurrency = sizes.docs, sizes.latency, sizes.concurrency
    source = write_jsonl(workdir / "throughput.jsonl", n)
    physical = n * latency / concurrency
    server = Server(workdir, latency)
    try:
        plain_process, plain_seconds = plain_script(server.url, n, concurrency)
        env = {**environment(workdir), "OPENAI_BASE_URL": server.url}
        llm = {"max_concurrent_requests": concurrency}
        # A deployment's steady state: an earlier run left the response format and the provider's
        # limits in the store, so this run neither probes nor scouts (write_jsonl's documents differ).
        warm_up = write_jsonl(workdir / "warm_up.jsonl", 8, first=n)
        run_job(workdir, job_config(warm_up, "gpt-test", "warm-up", llm), "warm_up", env)
        job = run_job(workdir, job_config(source, "gpt-test", "throughput", llm), "throughput", env)
        sent_first = server.stats()["requests"]
        report["throughput"] = {
            "documents": n, "latency_s": latency, "concurrency": concurrency,
            "a_physical_limit_docs_per_s": round(n / physical, 1),
            "b_plain_script_docs_per_s": round(n / plain_process, 1),
            "b_plain_asyncio_first_request_to_last_docs_per_s": round(n / plain_seconds, 1),
            "c_full_job_docs_per_s": round(n / job.seconds, 1),
            "b_over_a": round(physical / plain_process, 3),
            "c_over_b": round(plain_process / job.seconds, 3),
            "c_over_b_first_request_to_last": round(plain_seconds / job.seconds, 3),
            "job_seconds": round(job.seconds, 1), "job_statuses": statuses(env, job.run_id),
        }  # fmt: skip
        if rerun:
            again = run_job(workdir, job_config(source, "gpt-test", "throughput", llm), "rerun", env)
            report["cached_rerun"] = {
                "documents": n,
                "llm_calls": server.stats()["requests"] - sent_first,
                "seconds": round(again.seconds, 1),
                "statuses": statuses(env, again.run_id),
            }
    finally:
        server.close()


def rate_limited(workdir: Path, sizes: Sizes, report: dict) -> None:
    n, rpm, tpm = sizes.limited_docs, sizes.limited_rpm, sizes.limited_tpm
    source = write_jsonl(workdir / "limited.jsonl", n)
    server = Server(workdir, latency=0.1, rpm=rpm, tpm=tpm)
    try:
        env = {**environment(workdir), "OPENAI_BASE_URL": server.url}
        llm = {"requests_per_minute": rpm, "tokens_per_minute": tpm, "max_attempts": 10}
        job = run_job(workdir, job_config(source, "gpt-test", "limited", llm), "limited", env)
        stats = server.stats()
        window = max(stats["ok_last"] - stats["ok_first"], 1e-9)
        ok = stats["statuses"].get("200", 0)
        counts = statuses(env, job.run_id)
        report["rate_limited"] = {
            "documents": n, "rpm_limit": rpm, "tpm_limit": tpm,
            "achieved_rpm": round((ok - 1) / window * 60, 1),
            "rpm_fraction_of_limit": round((ok - 1) / window * 60 / rpm, 3),
            "achieved_tpm": round(stats["tokens"] / window * 60),
            "tpm_fraction_of_limit": round(stats["tokens"] / window * 60 / tpm, 3),
            "responses_429": stats["statuses"].get("429", 0),
            "failed_documents": sum(v for k, v in counts.items() if k != "ok"),
        }  # fmt: skip
    finally:
        server.close()


def _limit_figures(stats: dict, rpm: int, documents: int, counts: dict[str, int], wall_seconds: float) -> dict:
    ok = stats["statuses"].get("200", 0)
    return {
        "documents": documents, "rpm_limit": rpm, "requests": stats["requests"],
        "responses_429_percent": round(100 * stats["statuses"].get("429", 0) / max(stats["requests"], 1), 2),
        # From the first request the provider sees: the limiter's own start-up included.
        "fraction_of_limit_from_first_request": round(ok / (stats["ok_last"] - stats["first"]) * 60 / rpm, 3),
        "fraction_of_limit_once_running": round((ok - 1) / (stats["ok_last"] - stats["ok_first"]) * 60 / rpm, 3),
        # From launching the process(es) to the last exit: Dagster's start-up and teardown included.
        "fraction_of_limit_process_wall": round(documents / wall_seconds * 60 / rpm, 3),
        "ok_documents": counts.get("ok", 0),
        "failed_documents": sum(v for k, v in counts.items() if k != "ok"),
        "lost_documents": documents - sum(counts.values()),
    }  # fmt: skip


def learned_limit(workdir: Path, sizes: Sizes, report: dict) -> None:
    """One run, the llm resource at its defaults, against a provider that announces its limit in
    OpenAI's headers and enforces it per second with 429 + Retry-After."""
    n, rpm = sizes.learned_docs, sizes.learned_rpm
    source = write_jsonl(workdir / "learned.jsonl", n)
    server = Server(workdir, sizes.learned_latency, rpm, None, "--announce-limits")
    try:
        env = {**environment(workdir / "learned"), "OPENAI_BASE_URL": server.url}
        job = run_job(workdir, job_config(source, "gpt-test", "learned"), "learned", env)
        report["learned_limit"] = _limit_figures(server.stats(), rpm, n, statuses(env, job.run_id), job.seconds)
    finally:
        server.close()


def two_runs(workdir: Path, sizes: Sizes, report: dict) -> None:
    """Two concurrent runs of half the documents each, limits not configured, sharing a Redis budget."""
    import redis

    n, rpm, half = sizes.learned_docs, sizes.learned_rpm, sizes.learned_docs // 2
    redis_url = os.environ.get("BATCH_PIPELINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()  # the benchmark's own database
    server = Server(workdir, sizes.learned_latency, rpm, None, "--announce-limits")
    try:
        runs = []
        started = time.perf_counter()
        for name in ("run_a", "run_b"):
            source = write_jsonl(workdir / f"{name}.jsonl", half)
            env = {**environment(workdir / name), "OPENAI_BASE_URL": server.url,
                   "BATCH_PIPELINE_RATE_LIMIT_URL": redis_url}  # fmt: skip
            path = workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(job_config(source, "gpt-test", name)))
            command = [str(BIN / "dagster"), "job", "execute", "-m", "batch_pipeline.definitions",
                       "-j", "document_batch_job", "-c", str(path)]  # fmt: skip
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
            runs.append((process, env))
        counts: dict[str, int] = {}
        for process, env in runs:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a concurrent run failed:\n{output[-3000:]}")
            run_id = JobRun(0, output, None).run_id
            for status, count in statuses(env, run_id).items():
                counts[status] = counts.get(status, 0) + count
        wall = time.perf_counter() - started
        report["two_runs_shared_redis"] = _limit_figures(server.stats(), rpm, n, counts, wall)
    finally:
        server.close()


def faults(workdir: Path, sizes: Sizes, report: dict) -> None:
    """The llm resource at its defaults against 429s at the limit, 20 % HTTP 500 and 10 % garbled JSON."""
    n, rpm = sizes.fault_docs, sizes.learned_rpm
    source = write_jsonl(workdir / "faults.jsonl", n)
    flags = ("--announce-limits", "--error-rate", "0.2", "--malformed-rate", "0.1")
    server = Server(workdir, sizes.learned_latency, rpm, None, *flags)
    try:
        env = {**environment(workdir / "faults"), "OPENAI_BASE_URL": server.url}
        job = run_job(workdir, job_config(source, "gpt-test", "faults"), "faults", env)
        counts = statuses(env, job.run_id)
        report["faults"] = {"documents": n, "statuses": counts, "lost": n - sum(counts.values()),
                            "requests": server.stats()["statuses"]}  # fmt: skip
    finally:
        server.close()


def scale(workdir: Path, sizes: Sizes, report: dict) -> None:
    import dagster as dg

    source = write_jsonl(workdir / "scale.jsonl", sizes.scale_docs)
    results = {}
    runs = [("full", sizes.scale_docs)]
    if sizes.scale_compare:
        runs.insert(0, ("small", max(sizes.scale_docs // 10, 1)))
    for label, count in runs:
        path = source if label == "full" else write_jsonl(workdir / "scale_small.jsonl", count)
        home = workdir / f"dagster_home_{label}"
        env = environment(workdir / label, home)
        (workdir / label).mkdir(exist_ok=True)
        job = run_job(workdir, job_config(path, "local", f"scale-{label}"), f"scale_{label}", env, measure_rss=True)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = len(instance.all_logs(job.run_id))
        results[label] = {
            "documents": count, "seconds": round(job.seconds, 1), "docs_per_s": round(count / job.seconds, 1),
            "peak_rss_mib": round(job.max_rss_kb / 1024, 1), "dagster_events": events,
            "partitions": -(-count // 500), "record_creation_docs_per_s": job.registration_rate(),
            "statuses": statuses(env, job.run_id),
        }  # fmt: skip
    report["scale"] = results


def sweep(workdir: Path, sizes: Sizes, report: dict, plot_path: Path | None) -> None:
    n, latency = sizes.sweep_docs, sizes.sweep_latency
    source = write_jsonl(workdir / "sweep.jsonl", n)
    server = Server(workdir, latency)
    points = []
    try:
        for concurrency in sizes.sweep:
            env = {**environment(workdir / f"sweep_{concurrency}"), "OPENAI_BASE_URL": server.url}
            llm = {"max_concurrent_requests": concurrency}
            job = run_job(
                workdir, job_config(source, "gpt-test", f"sweep-{concurrency}", llm), f"sweep_{concurrency}", env
            )
            ideal = min(concurrency, n) / latency
            points.append(
                {
                    "concurrency": concurrency,
                    "ideal_docs_per_s": round(ideal, 1),
                    "job_docs_per_s": round(n / job.seconds, 1),
                }
            )
    finally:
        server.close()
    report["sweep"] = {"documents": n, "latency_s": latency, "points": points}
    if plot_path is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [p["concurrency"] for p in points]
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(xs, [p["ideal_docs_per_s"] for p in points], "--", label="ideal: concurrency / latency")
        axes.plot(xs, [p["job_docs_per_s"] for p in points], "o-", label="document_batch_job (process start to exit)")
        axes.set(xscale="log", yscale="log", xlabel="max_concurrent_requests", ylabel="documents / s",
                 title=f"{n} documents, {latency}s latency")  # fmt: skip
        axes.set_xticks(xs, [str(x) for x in xs])
        axes.legend()
        figure.tight_layout()
        figure.savefig(plot_path, dpi=120)
        report["sweep"]["plot"] = str(plot_path)


SCENARIOS = ("throughput", "rerun", "ratelimit", "learned", "two_runs", "faults", "scale", "sweep")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the benchmark works")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    parser.add_argument("--plot", default=str(REPO_ROOT / "docs" / "benchmark_sweep.png"))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--docs", type=int, help="documents of the throughput scenario (default 10,000)")
    parser.add_argument("--repeat", type=int, default=1, help="run the throughput scenario this many times")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.docs:
        sizes = dataclasses.replace(sizes, docs=args.docs)
    chosen = set(args.only.split(","))
    report: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        }
    }
    with tempfile.TemporaryDirectory(prefix="batch_pipeline_bench_") as tmp:
        workdir = Path(tmp)
        if chosen & {"throughput", "rerun"}:
            throughput_and_rerun(workdir, sizes, report, rerun="rerun" in chosen)
        if "throughput" in chosen and args.repeat > 1:
            repeats = [report["throughput"]]
            for i in range(1, args.repeat):
                (fresh := workdir / f"repeat-{i}").mkdir()  # a store of its own: nothing cached
                throughput_and_rerun(fresh, sizes, again := {}, rerun=False)
                repeats.append(again["throughput"])
            ratios = sorted(r["c_over_b"] for r in repeats)
            keys = ("b_plain_script_docs_per_s", "c_full_job_docs_per_s", "c_over_b", "job_seconds")
            report["throughput_repeats"] = {
                "runs": [{key: r[key] for key in keys} for r in repeats],
                "c_over_b": [r["c_over_b"] for r in repeats],
                "median": ratios[len(ratios) // 2],
            }
        if "ratelimit" in chosen:
            rate_limited(workdir, sizes, report)
        if "learned" in chosen:
            learned_limit(workdir, sizes, report)
        if "two_runs" in chosen:
            two_runs(workdir, sizes, report)
        if "faults" in chosen:
            faults(workdir, sizes, report)
        if "scale" in chosen:
            scale(workdir, sizes, report)
        if "sweep" in chosen:
            sweep(workdir, sizes, report, Path(args.plot) if args.plot else None)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
