"""A batch from registration to stored results: what a launch asks for and its registration
(``registration``), its partitions, what it would cost (``estimate``), the per-partition runners
that analyse them (``runner``; ``llm_partition`` for an LLM, online or through the Batch API with
``batch_api_runner`` and ``batch_spend``), and the offline analysers' worker processes (``offline``)."""
