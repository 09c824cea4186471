"""What the tests and the benchmarks run against, shared by both and installed with neither: an
OpenAI-compatible loopback server with the Batch API (``fake_openai_server``), generated files of
every format the pipeline converts (``conversion_fixtures``), and a labelled set of documents for
detection quality (``labelled_set``)."""
