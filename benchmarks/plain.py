"""(b) of the throughput benchmark: what a hand-written script does — the same prompts and response
format through AsyncOpenAI at the same concurrency, no orchestration.

    python -m benchmarks.plain BASE_URL DOCUMENTS CONCURRENCY
"""

import asyncio
import sys
import time

import openai

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.response_format import ResponseFormatMode, response_format

API_KEY = "sk-bench-key"
MODEL = catalogue().get("content_compliance")


def document(i: int) -> dict:
    return {
        "filename": f"doc_{i:06d}.md",
        "markdown_content": f"# Note {i}\n\nContact user{i}@example.com about order {i}.\n\nShipped on 2024-05-{i % 28 + 1:02d}.\n",
    }


async def plain_asyncio(url: str, count: int, concurrency: int) -> float:
    """Seconds to analyse count documents, from the first request to the last answer."""
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=url, max_retries=5, timeout=60)
    semaphore = asyncio.Semaphore(concurrency)
    fmt = response_format(MODEL, ResponseFormatMode.json_schema)

    async def one(i: int) -> None:
        async with semaphore:
            messages = build_messages(MODEL, "", document(i)["markdown_content"], ResponseFormatMode.json_schema)
            completion = await client.chat.completions.create(model="gpt-test", messages=messages, response_format=fmt)
            MODEL.result_schema.model_validate_json(completion.choices[0].message.content)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


if __name__ == "__main__":
    url, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(asyncio.run(plain_asyncio(url, count, concurrency)))
