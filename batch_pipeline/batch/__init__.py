"""A batch from registration to stored results: what a launch asks for and its registration
(``registration``), its partitions, what it would cost (``estimate``), how each partition is
analysed (``partition_analysis`` decides: offline, or through the LLM, ``llm_partition``, online
with ``runner`` or through the Batch API with ``batch_api_runner`` and ``batch_spend``), and the
offline analysers' worker processes (``offline``)."""
