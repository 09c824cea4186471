"""What the command reads on this host: a run's stored results and status, the models, a config check."""

import json
import os
import re
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml
from sqlalchemy.engine import make_url

from batch_pipeline import settings
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.batch.estimate import CostEstimate
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.definitions import resolve_document_batch_job
from batch_pipeline.defs.config import BatchConfig, batch_config_of
from batch_pipeline.defs.resources import LlmResource
from batch_pipeline.launch import sequence
from batch_pipeline.launch.sequence import LaunchRefused
from batch_pipeline.report.csv_cells import write_csv
from batch_pipeline.store import DocumentStore
from batch_pipeline.store.run_records import recent_runs


def open_store() -> DocumentStore:
    store = DocumentStore(settings.database_url())
    store.create_schema()
    return store


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def print_results(rows: pd.DataFrame, output_format: str) -> None:
    rows = rows.astype(object).where(rows.notna(), None)
    if output_format == "csv":
        write_csv(rows, sys.stdout)
        return
    for record in rows.to_dict(orient="records"):
        record["result"] = json.loads(record["result"]) if record["result"] else None
        print(json.dumps(record, ensure_ascii=False))


def print_runs(project: str | None, model_key: str | None, ai_model: str | None, limit: int, output_format: str) -> int:
    """`batch-pipeline runs`: from the store, with each run's Dagster status where $DAGSTER_HOME has it."""
    store = open_store()
    try:
        runs = recent_runs(store, project, model_key, ai_model, limit)
    finally:
        store.close()
    statuses = _dagster_statuses([run.run_id for run in runs])
    if output_format == "json":
        for run in runs:
            print(json.dumps({**run.model_dump(mode="json"), "dagster_status": statuses.get(run.run_id)}))
        return 0
    if not runs:
        print(
            f"No runs in the store at {store.shown_url}"
            + (" matching the filters" if project or model_key or ai_model else "")
        )
        return 0
    rows = [
        {"run": run.run_id, "when (UTC)": run.created_at.strftime("%Y-%m-%d %H:%M"), "project": run.project,
         "model_key": run.model_key, "ai_model": run.ai_model, "status": statuses.get(run.run_id, "—"),
         "documents": ", ".join(f"{k} {v}" for k, v in run.status_counts.items()),
         "checks": "failed: " + ", ".join(run.failed_checks) if run.failed_checks else ""}
        for run in runs
    ]  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False))
    return 0


def _dagster_statuses(run_ids: list[str]) -> dict[str, str]:
    home = os.environ.get("DAGSTER_HOME")
    if not run_ids or not home or not Path(home).is_dir():
        return {}
    with dg.DagsterInstance.get() as instance:
        return {run.run_id: run.status.value for run in instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))}


def dagster_run_status(run_id: str) -> str:
    if not os.environ.get("DAGSTER_HOME"):
        return "unknown (DAGSTER_HOME is not set, so there is no persistent Dagster instance to ask)"
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        return run.status.value if run else f"not found in the Dagster instance at {os.environ['DAGSTER_HOME']}"


def runs_launched_by(launcher_run_id: str) -> list[str]:
    """The runs compare_contexts_job's run launched (comparison_runs_sensor), in its contexts' order."""
    from batch_pipeline.defs.tags import CONTEXT_INDEX_TAG, LAUNCHED_BY_TAG

    if not os.environ.get("DAGSTER_HOME"):
        raise LookupError("set DAGSTER_HOME to the instance the runs were launched in")
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={LAUNCHED_BY_TAG: launcher_run_id}))
    if not runs:
        raise LookupError(
            f"no run was launched by {launcher_run_id} (yet) in the instance at {os.environ['DAGSTER_HOME']}"
        )
    # Newest first: for each context, its latest run (a resumed run's resume replaces it).
    latest: dict[int, str] = {}
    for run in runs:
        index = run.tags.get(CONTEXT_INDEX_TAG, "")
        if index.isdecimal():
            latest.setdefault(int(index), run.run_id)
    return [latest[index] for index in sorted(latest)]


def run_progress(instance: dg.DagsterInstance, run_id: str) -> tuple[str, list[str]]:
    """(the run's Dagster status, the steps running now), from the local instance."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise LookupError(f"run {run_id} is not in the Dagster instance at {os.environ.get('DAGSTER_HOME')}")
    return run.status.value, [s.step_key for s in instance.get_run_step_stats(run_id) if s.end_time is None]


def _schema_problems(run_config: dict) -> list[str]:
    try:
        dg.validate_run_config(resolve_document_batch_job(), run_config)
    except dg.DagsterInvalidConfigError as e:
        return [_plain(error.message.split("\n\nStack Trace")[0].strip()) for error in e.errors]
    return []


def _plain(problem: str) -> str:
    """Dagster's message for an unknown model_key, as what to do instead."""
    if (match := re.search(r"model_key not in enum type ModelKey got (.*)$", problem)) is not None:
        keys = ", ".join(catalogue().offered_keys)
        return f"context.model_key {match.group(1)!r} is not an analysis this deployment has; use one of: {keys}"
    return problem


def launch_problems(run_config: dict) -> list[str]:
    """What the run would refuse before writing anything: the schema's problems, else every check
    the schema cannot express (all of them at once)."""
    if problems := _schema_problems(run_config):
        return problems
    return sequence.client_side_problems(BatchConfig(**batch_config_of(run_config)).to_request())


def config_problems(run_config: dict) -> list[str]:
    """Everything wrong with a run config for document_batch_job here, with the valid choices named
    (launch_problems, and an LLM's key and endpoint as this environment has them)."""
    if problems := _schema_problems(run_config):
        return problems
    request = BatchConfig(**batch_config_of(run_config)).to_request()
    analysis = sequence.analysis_problems(request, catalogue())
    return sequence.client_side_problems(request) + analysis + _llm_problems(request, run_config)


def broken_analyses() -> list[str]:
    """The definitions this deployment could not load, each with its error."""
    return [broken.error for broken in catalogue().broken]


def llm_needs(run_config: dict) -> list[str]:
    """What the run will need from this environment that it lacks (the key, an allowed endpoint)."""
    return _llm_problems(BatchConfig(**batch_config_of(run_config)).to_request(), run_config)


def _llm_problems(request: BatchRequest, run_config: dict) -> list[str]:
    if request.context.is_local:
        return []
    problems = []
    if settings.llm_api_key() is None:
        problems.append(
            f"ai_model {request.context.ai_model!r} is an LLM: it needs the environment variable "
            f"{settings.API_KEY_ENV}, which is not set"
        )
    base_url = run_config.get("resources", {}).get("llm", {}).get("config", {}).get("base_url")
    try:
        settings.llm_base_url(base_url if isinstance(base_url, str) else None)
    except settings.NotAllowed as e:
        problems.append(str(e))
    return problems


class CannotEstimate(Exception):
    pass


class BadRunConfigFile(Exception):
    """A run config file that cannot be read as one: the message says where and what to do."""


def read_run_config(path: Path) -> dict:
    """A run config YAML file, or BadRunConfigFile naming the file (and the line of a YAML error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRunConfigFile(f"{path}: no such file (give the path of a run config YAML file)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadRunConfigFile(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    try:
        run_config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise BadRunConfigFile(
            f"{where}: not valid YAML: {e.problem or e.context} (check the indentation there)"
        ) from None
    except yaml.YAMLError as e:
        raise BadRunConfigFile(f"{path}: not valid YAML: {e}") from None
    if run_config is None:
        return {}
    if not isinstance(run_config, dict):
        raise BadRunConfigFile(f"{path}: a run config is a mapping (ops: {{create_document_records: {{config: ...}}}})")
    return run_config


def names_an_llm(run_config: dict) -> bool:
    return not BatchConfig(**batch_config_of(run_config)).to_request().context.is_local


def provider_problems(run_config: dict) -> list[str]:
    """`check --provider`: the endpoint answers, accepts the key and serves the run's model (an LLM run only)."""
    request = BatchConfig(**batch_config_of(run_config)).to_request()
    if request.context.is_local:
        return []
    try:
        sequence.check_provider(_llm_resource(run_config).provider, request.context.ai_model)
    except LaunchRefused as e:
        return [e.reason]
    return []


def _llm_resource(run_config: dict) -> LlmResource:
    llm_config = run_config.get("resources", {}).get("llm", {}).get("config", {})
    return LlmResource(**{k: v for k, v in llm_config.items() if k in LlmResource.model_fields})


def estimate(run_config: dict) -> CostEstimate:
    """The pre-run estimate of a run config's batch, against the local store; sends nothing."""
    if problems := _schema_problems(run_config):
        raise CannotEstimate("; ".join(problems))
    request = BatchConfig(**batch_config_of(run_config)).to_request()
    if problems := sequence.client_side_problems(request) + sequence.analysis_problems(request, catalogue()):
        raise CannotEstimate("; ".join(problems))
    request = sequence.pin(request, catalogue())
    if request.context.is_local:
        raise CannotEstimate("ai_model 'local' runs the offline analysers: it sends nothing and costs nothing")
    llm = _llm_resource(run_config)
    store = open_store()
    try:
        read = sequence.read(request, store)
        return sequence.estimate(request, read, store, sequence.endpoint_of(llm.provider), llm.response_format)
    except LaunchRefused as e:
        raise CannotEstimate(e.reason) from None
