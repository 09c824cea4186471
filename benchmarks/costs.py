"""Cost figures: how close `batch-pipeline estimate` comes to what the provider reports, before and
after one calibrating run, and what the same batch costs online and through the Batch API.

    .venv/bin/python -m benchmarks.costs [--docs N] [--json FILE]

Against the loopback server (its own process); prices: gpt-4o-mini's list prices (online and
Batch) applied to the server's model. Prints JSON.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from batch_pipeline.costs.prices import DEFAULT_PRICES
from batch_pipeline.store import DocumentStore
from benchmarks.run import BIN, REPO_ROOT, Server, environment, job_config, run_job

TOPICS = ["invoice", "shipment", "contract renewal", "security review", "customer complaint", "refund"]


def memo(i: int) -> dict:
    """Documents of varied length and content, as a real batch has."""
    rng = random.Random(i)
    body = " ".join(
        f"The {rng.choice(TOPICS)} for account {rng.randint(1000, 9999)} is due on 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}."
        for _ in range(rng.randint(2, 30))
    )
    contact = f"Contact person{i}@example.com or +1 415 555 {i % 10000:04d}." if i % 3 else "No contact given."
    return {"filename": f"memo_{i:06d}.md", "markdown_content": f"# Memo {i}\n\n{body}\n\n{contact}\n"}


def write_memos(path: Path, first: int, count: int) -> Path:
    path.write_text("".join(json.dumps(memo(i)) + "\n" for i in range(first, first + count)))
    return path


def estimate(config_path: Path, env: dict) -> dict:
    done = subprocess.run([str(BIN / "batch-pipeline"), "estimate", str(config_path), "--format", "json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def provider_tokens(env: dict, run_id: str) -> int:
    store = DocumentStore(f"sqlite:///{Path(env['BATCH_PIPELINE_HOME']) / 'store.sqlite'}")
    try:
        rows = store.results(run_id)
        return int(rows["input_tokens"].sum() + rows["output_tokens"].sum())
    finally:
        store.close()


def measure(workdir: Path, docs: int) -> dict:
    prices = workdir / "prices.yaml"
    prices.write_text(yaml.safe_dump({"gpt-test": DEFAULT_PRICES["gpt-4o-mini"].model_dump()}))
    os.environ["BATCH_PIPELINE_PRICES"] = str(prices)  # for pricing the runs' rows here, as the runs do
    server = Server(workdir, 0.05)
    env = {**environment(workdir), "OPENAI_BASE_URL": server.url, "BATCH_PIPELINE_PRICES": str(prices)}
    figures: dict = {"documents": docs, "prices": "gpt-4o-mini's (USD per 1M tokens)"}
    try:
        for name, first, project, llm_api in (("first", 0, "first", "online"), ("next", 100_000, "next", "online"),
                                              ("next_batch", 100_000, "next-batch", "batch")):  # fmt: skip
            source = write_memos(workdir / f"{name}.jsonl", first, docs)
            config = job_config(source, "gpt-test", project, {"batch_poll_max_seconds": 2})
            config["ops"]["create_document_records"]["config"]["llm_api"] = llm_api
            config_path = workdir / f"{name}.yaml"
            config_path.write_text(yaml.safe_dump(config))
            predicted = estimate(config_path, env)
            job = run_job(workdir, config, name, env)
            actual = provider_tokens(env, job.run_id)
            predicted_tokens = predicted["input_tokens"] + predicted["output_tokens"]
            figures[name] = {
                "llm_api": llm_api,
                "calibrated_from_documents": predicted["calibrated_from_documents"],
                "estimated_tokens": predicted_tokens,
                "provider_tokens": actual,
                "estimate_error": round((predicted_tokens - actual) / actual, 4),
                "estimated_cost_usd": predicted["estimated_cost_usd"],
                "run_cost_usd": _cost(env, job.run_id),
                "seconds": round(job.seconds, 1),
            }
    finally:
        server.close()
    online, batch = figures["next"]["run_cost_usd"], figures["next_batch"]["run_cost_usd"]
    figures["same_batch_online_vs_batch"] = {"online_usd": online, "batch_usd": batch,
                                             "saved_usd": round(online - batch, 6)}  # fmt: skip
    return figures


def _cost(env: dict, run_id: str) -> float:
    from batch_pipeline.report.report import token_usage

    store = DocumentStore(f"sqlite:///{Path(env['BATCH_PIPELINE_HOME']) / 'store.sqlite'}")
    try:
        return round(sum(u.estimated_cost_usd or 0 for u in token_usage(store.results(run_id))), 6)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="batch_pipeline_costs_") as tmp:
        figures = measure(Path(tmp), args.docs)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
