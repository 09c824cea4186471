"""Dagster config classes derived from the plain models that declare each setting once (type,
default, description): the Launchpad shows what the plain code receives, and cannot drift from it."""

import types
import typing
from functools import cache

import dagster as dg
from pydantic import BaseModel, Field, create_model

# (model, field) -> (the type the Launchpad shows instead, a description to use instead or None).
Overrides = tuple[tuple[tuple[type[BaseModel], str], tuple[typing.Any, str | None]], ...]


@cache
def config_class(
    model: type[BaseModel], base: type[dg.Config] = dg.Config, overrides: Overrides = ()
) -> type[dg.Config]:
    """A `base` subclass with `model`'s fields, nested models turned into config classes too;
    ``overrides`` narrow a field's type for the Launchpad (e.g. a str to the enum of its choices)."""
    fields = {}
    replaced = dict(overrides)
    for name, info in model.model_fields.items():
        annotation, description = replaced.get((model, name), (None, None))
        options = {"description": description or info.description}
        if not info.is_required():
            options["default"] = info.get_default(call_default_factory=True)
        fields[name] = (annotation or _config_type(info.annotation, overrides), Field(**options))
    return create_model(f"{model.__name__}Config", __base__=base, __doc__=model.__doc__, **fields)


def _config_type(annotation, overrides: Overrides):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_config_type(a, overrides) for a in typing.get_args(annotation))]  # noqa: UP007
    if origin is list:
        return list[_config_type(typing.get_args(annotation)[0], overrides)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return config_class(annotation, overrides=overrides)
    return annotation
