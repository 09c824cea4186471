"""The run config schema launchers see: Dagster's own, minus everything only the deployment may choose.

Dagster turns every ``str``/``int``/``bool`` config field (ours and its own: the loggers', the
executors', the IO manager's) into ``StringSource``/``IntSource``/``BoolSource``, which also accept
``{env: NAME}``: whoever may launch a run could copy any environment variable of the run's process
into the store, the reports and the prompts. The job exposes this copy of its schema through a
``ConfigMapping`` that passes the config on unchanged, so such a launch fails validation, like any
wrong type, before a run is stored and before the variable is read; the error names the field, not
a value. Deployment settings come from the environment (``batch_pipeline.settings``), never from run config.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

# Dagster's own fields that name a file or the modules a run imports: not a launcher's choice.
DEPLOYMENT_ONLY_FIELDS = frozenset({"marker_to_close", "preload_modules"})


def launchable(graph: dg.GraphDefinition, **job_arguments) -> dg.JobDefinition:
    """``graph.to_job(**job_arguments)`` whose run config accepts no ``{env: ...}`` and no deployment-only field."""
    standard = graph.to_job(**job_arguments).run_config_schema.run_config_schema_type
    return graph.to_job(
        **job_arguments,
        config=dg.ConfigMapping(
            config_fn=lambda config: config,
            config_schema=without_environment(standard),
            # Validated, not processed: Enum members stay names for the job's own schema.
            receive_processed_config_values=False,
        ),
    )


def launch_safe(resource: dg.ConfigurableResource) -> dg.ResourceDefinition:
    """The resource's definition, its config schema without ``{env: ...}``: for the jobs Dagster
    builds itself (the asset job behind Materialize), whose schema no ConfigMapping wraps."""
    definition = resource.get_resource_definition()
    return dg.ResourceDefinition(
        resource_fn=definition.resource_fn,
        config_schema=_field(definition.config_schema.as_field()),
        description=definition.description,
    )


def reads_environment(config_type: Any) -> bool:
    """Whether a value of this type may be ``{env: NAME}`` (Dagster's *Source types)."""
    return (
        isinstance(config_type, dg.ScalarUnion)
        and isinstance(config_type.non_scalar_type, dg.Selector)
        and "env" in config_type.non_scalar_type.fields
    )


def without_environment(config_type: Any) -> Any:
    if reads_environment(config_type):
        return config_type.scalar_type
    if isinstance(config_type, dg.Selector):
        return dg.Selector(_fields(config_type.fields), description=config_type.description)
    if isinstance(config_type, dg.Permissive):
        return dg.Permissive(_fields(config_type.fields), description=config_type.description)
    if isinstance(config_type, dg.Shape):
        return dg.Shape(
            _fields(config_type.fields), description=config_type.description, field_aliases=config_type.field_aliases
        )
    if isinstance(config_type, dg.Noneable):
        return dg.Noneable(without_environment(config_type.inner_type))
    if isinstance(config_type, dg.Array):
        return dg.Array(without_environment(config_type.inner_type))
    if isinstance(config_type, dg.Map):
        return dg.Map(config_type.key_type, without_environment(config_type.inner_type), config_type.given_name)
    return config_type


def _fields(fields: Mapping[str, dg.Field]) -> dict[str, dg.Field]:
    return {name: _field(field) for name, field in fields.items() if name not in DEPLOYMENT_ONLY_FIELDS}


def _field(field: dg.Field) -> dg.Field:
    defaults = {"default_value": field.default_value} if field.default_provided else {}
    return dg.Field(
        without_environment(field.config_type),
        is_required=field.is_required,
        description=field.description,
        **defaults,
    )
