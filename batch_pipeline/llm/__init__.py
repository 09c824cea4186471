"""The LLM backend: an OpenAI-compatible provider through the openai client — its preflight and
response-format probe (``provider``), the per-document analyser with retries (``analyser``), the
Batch API's files and batches (``batch_api``, ``batch_lines``), prompts, response formats and
token estimates. Its pacing comes from ``rate_limits``, its spend limit from ``costs``."""
