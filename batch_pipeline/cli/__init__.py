"""The ``batch-pipeline`` command (``main``): local inspection and config checks (``local``), the
webserver over GraphQL (``remote``), finishing a dead run (``recovery``)."""
