"""Every leaf of a Dagster config schema, with its path: what the trust-boundary tests walk, so a
field added to the job later is covered without anyone remembering to."""

import dagster as dg

from batch_pipeline.defs.launch_schema import reads_environment

ITEM = "[]"  # a path step into an array's items


def leaves(config_type, path: tuple = ()) -> list[tuple[tuple, object]]:
    """(path, type) of every scalar, enum, {env: ...}-reading or untyped place in the schema."""
    if isinstance(config_type, dg.Shape | dg.Permissive | dg.Selector) and not reads_environment(config_type):
        assert not isinstance(config_type, dg.Permissive), f"{'.'.join(path)} takes any key"
        return [
            found for name, field in config_type.fields.items() for found in leaves(field.config_type, (*path, name))
        ]
    if isinstance(config_type, dg.Noneable | dg.Map):
        return leaves(config_type.inner_type, path)
    if isinstance(config_type, dg.Array):
        return leaves(config_type.inner_type, (*path, ITEM))
    return [(path, config_type)]


def declared_leaves(config_type) -> list[tuple[tuple, object]]:
    """leaves() of a job Dagster builds itself (the asset job): its ops and resources sections also
    take keys they do not declare (config for what the selection does not run, passed on unread)."""
    return [
        found
        for section, field in config_type.fields.items()
        for name, inner in (field.config_type.fields.items() if section in ("ops", "resources") else [(None, field)])
        for found in leaves(inner.config_type, (section, name) if name else (section,))
    ]
