"""batch_pipeline: analyse batches of markdown/text documents with Dagster."""
