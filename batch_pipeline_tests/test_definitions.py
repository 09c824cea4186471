import dagster as dg

from batch_pipeline.definitions import defs
from batch_pipeline.defs.resources import DocumentStoreResource


def test_definitions_load_the_job_its_ops_and_resources():
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("document_batch_job")
    assert {node.name for node in job.nodes} == {"create_document_records", "analyze_partition", "aggregate"}
    assert isinstance(defs.resources["document_store"], DocumentStoreResource)
    assert set(defs.resources) == {"document_store", "llm", "offline", "inbox"}
    assert {s.name for s in defs.sensors} == {"inbox_sensor", "batch_failure_sensor"}
    assert [s.name for s in defs.schedules] == ["nightly_compliance_sweep"]
    assert job.graph.node_named("analyze_partition").definition.pool == "llm"
    assert job.op_retry_policy is None
    assert job.graph.node_named("analyze_partition").definition.retry_policy.max_retries == 2


def test_launchpad_offers_the_model_keys_as_a_choice():
    job = defs.resolve_job_def("document_batch_job")
    config_type = job.run_config_schema.config_type
    context_fields = (
        config_type.fields["ops"].config_type.fields["create_document_records"]
        .config_type.fields["config"].config_type.fields["context"].config_type.fields
    )  # fmt: skip
    model_key = context_fields["model_key"]
    assert [v.config_value for v in model_key.config_type.enum_values] == ["content_compliance", "document_metadata"]
    assert "Finds personal data" in model_key.description
    assert context_fields["ai_model"].is_required
    assert not context_fields["custom_instructions"].is_required
