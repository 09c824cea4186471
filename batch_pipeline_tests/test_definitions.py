import subprocess
import sys

import dagster as dg

from batch_pipeline.definitions import defs
from batch_pipeline.defs.assets import ANALYSED_DOCUMENTS, PROJECTS


def test_definitions_load_the_job_its_ops_and_resources():
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("document_batch_job")
    assert {node.name for node in job.nodes} == {"create_document_records", "analyse_partition", "aggregate"}
    assert set(job.resource_defs) == {"document_store", "llm", "offline", "io_manager"}
    assert set(defs.resources) == {
        "inbox",
        "document_store",
        "llm",
        "offline",
        "io_manager",
    }  # the sensor's, the asset's
    assert {s.name for s in defs.sensors} == {"inbox_sensor", "batch_failure_sensor", "comparison_runs_sensor"}
    assert [s.name for s in defs.schedules] == ["nightly_compliance_sweep"]
    assert job.graph.node_named("analyse_partition").definition.pool == "llm"
    assert job.op_retry_policy is None
    assert job.graph.node_named("analyse_partition").definition.retry_policy.max_retries == 2


def test_analysed_documents_is_materializable_over_the_jobs_ops_with_blocking_checks():
    asset = defs.resolve_assets_def(ANALYSED_DOCUMENTS)
    assert asset.is_materializable and asset.partitions_def == PROJECTS
    nodes = {node.name for node in asset.node_def.nodes}
    assert nodes == {"create_document_records", "analyse_partition", "conclude_analysed_documents"}
    assert {spec.name: spec.blocking for spec in asset.check_specs} == {"failure_rate": True, "labelled_score": True}


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


def test_a_run_of_text_documents_loads_neither_the_report_converter_nor_celery_libraries_until_it_needs_them(tmp_path):
    """Every `dagster job execute` and step process loads the code location, and every LLM run registers
    its batch: pandas (the report), the converters and dagster-celery cost about a second between them
    (docs/benchmarks.md), so they load in the step and the run that use them; the openai SDK (0.6 s)
    loads only in a process that talks to a provider, never for the code location alone. (Jinja2 does
    load: the code location checks each analysis's prompt template when it reads the definitions.)"""
    (tmp_path / "note.md").write_text("Contact jane@example.com\n")
    code = f"""
import sys
import batch_pipeline.definitions
from batch_pipeline.batch.registration import read_batch
from batch_pipeline.batch.request import BatchRequest, FailurePolicy
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.context import ProcessingContext
heavy = ("pandas", "matplotlib", "leather", "dagster_celery", "markitdown", "pypdfium2", "PIL", "pytesseract", "redis")
loaded = [m for m in heavy + ("openai",) if m in sys.modules]
request = BatchRequest(
    project="p", source={str(tmp_path)!r}, documents=None, partition_size=None, force=False, max_document_bytes=10_000,
    follow_symlinks=False, analysis_timeout_seconds=60, on_document_failure=FailurePolicy.succeed,
    context=ProcessingContext(model_key="content_compliance", ai_model="gpt-4o-mini").pinned(catalogue()),
)
assert len(read_batch(request).docs) == 1
loaded += [m for m in heavy if m in sys.modules and m not in loaded]
print(",".join(loaded))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
