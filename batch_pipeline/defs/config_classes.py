"""Dagster config classes derived from the plain models that declare each setting once (type,
default, description): the Launchpad shows what the plain code receives, and cannot drift from it."""

import types
import typing
from functools import cache

import dagster as dg
from pydantic import BaseModel, Field, create_model


@cache
def config_class(model: type[BaseModel], base: type[dg.Config] = dg.Config) -> type[dg.Config]:
    """A `base` subclass with `model`'s fields, nested models turned into config classes too."""
    fields = {}
    for name, info in model.model_fields.items():
        options = {"description": info.description}
        if not info.is_required():
            options["default"] = info.get_default(call_default_factory=True)
        fields[name] = (_config_type(info.annotation), Field(**options))
    return create_model(f"{model.__name__}Config", __base__=base, __doc__=model.__doc__, **fields)


def _config_type(annotation):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_config_type(a) for a in typing.get_args(annotation))]  # noqa: UP007
    if origin is list:
        return list[_config_type(typing.get_args(annotation)[0])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return config_class(annotation)
    return annotation
