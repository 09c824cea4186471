"""A launch, without Dagster: every check a run makes before it writes or sends anything, and the
registration of its batch, used alike by the create_document_records op and the command's
`check` and `estimate`."""
