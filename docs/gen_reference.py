"""The docs site's reference pages, generated from the code at build time (mkdocs-gen-files), so
they cannot drift from it: run config fields, the llm resource's settings, the environment
settings, document statuses and the CLI."""

import argparse
import importlib
import inspect
import re
import types
import typing
from enum import Enum
from pathlib import Path

import mkdocs_gen_files
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from batch_pipeline import outcome, settings
from batch_pipeline.batch.request import BatchRequest
from batch_pipeline.cli.main import build_parser
from batch_pipeline.llm.options import LlmOptions


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {type_name(typing.get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def field_rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True) if not info.is_required() else PydanticUndefined
        shown = "required" if default is PydanticUndefined else f"`{getattr(default, 'value', default)!r}`"
        if isinstance(default, BaseModel):
            shown = "see below"
        rows.append(f"| `{prefix}{name}` | {type_name(info.annotation)} | {shown} | {cell(info.description or '')} |")
        nested = [a for a in (info.annotation, *typing.get_args(info.annotation)) if isinstance(a, type)]
        for inner in nested:
            if issubclass(inner, BaseModel):
                rows += field_rows(inner, f"{prefix}{name}.")
            for item in typing.get_args(info.annotation):
                for arg in typing.get_args(item):
                    if isinstance(arg, type) and issubclass(arg, BaseModel):
                        rows += field_rows(arg, f"{prefix}{name}[].")
    return rows


HEADER = ["| field | type | default | what it does |", "|---|---|---|---|"]

with mkdocs_gen_files.open("reference/run-config.md", "w") as page:
    page.write("# Run config reference\n\nGenerated from `batch_pipeline/batch/request.py` and `llm/options.py`.\n\n")
    page.write("## ops.create_document_records.config\n\n")
    page.write("In `document_batch_job`; Materialize on `analysed_documents` takes the same fields under ")
    page.write("`ops.batch_pipeline__analysed_documents.config`.\n\n")
    page.write("\n".join(HEADER + field_rows(BatchRequest)) + "\n\n")
    page.write("## resources.llm.config\n\n" + "\n".join(HEADER + field_rows(LlmOptions)) + "\n")

with mkdocs_gen_files.open("reference/settings.md", "w") as page:
    page.write("# Environment settings\n\nWhat the deployment decides, never run config. Generated from ")
    page.write("`batch_pipeline/settings.py`: each variable with the docstring of what reads it.\n\n")
    page.write("| variable | read by | what it does |\n|---|---|---|\n")
    functions = [f for _, f in inspect.getmembers(settings, inspect.isfunction) if f.__module__ == settings.__name__]
    for constant, variable in vars(settings).items():
        if not (constant.endswith("_ENV") and isinstance(variable, str)):
            continue
        readers = [f for f in functions if re.search(rf"\b{constant}\b", inspect.getsource(f))]
        docs = " ".join(cell(inspect.getdoc(f) or "") for f in readers[:1])
        page.write(f"| `{variable}` | {', '.join(f'`{f.__name__}()`' for f in readers) or '—'} | {docs} |\n")
    # Read where they are used, outside settings.py: each with the comment or docstring of its module.
    package = Path(settings.__file__).parent
    for path in sorted(package.rglob("*.py")):
        if path.name == "settings.py":
            continue
        for match in re.finditer(r'^[A-Z_]+_ENV = "([A-Z_]+)"', path.read_text(), re.M):
            module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
            first_line = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            page.write(f"| `{match.group(1)}` | `{module}` | {cell(first_line)} |\n")

with mkdocs_gen_files.open("reference/statuses.md", "w") as page:
    page.write(
        "# Document statuses\n\nGenerated from `batch_pipeline/outcome.py` (`DocumentStatus`), with its comments.\n\n"
    )
    page.write("| status | group | note |\n|---|---|---|\n")
    group = ""
    for line in inspect.getsource(outcome.DocumentStatus).splitlines()[2:]:
        if heading := re.match(r"\s+# (.*)", line):
            group = heading.group(1).rstrip(".")
        elif member := re.match(r'\s+(\w+) = "\w+"(?:\s+# (.*))?', line):
            page.write(f"| `{member.group(1)}` | {cell(group)} | {cell(member.group(2) or '')} |\n")

with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    parser = build_parser()
    page.write(
        "# The batch-pipeline command\n\nGenerated from its argument parser (`batch-pipeline COMMAND --help`).\n\n"
    )
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    for name, command in commands.choices.items():
        page.write(f"## {name}\n\n{cell(helps.get(name, ''))}\n\n```\n{command.format_usage().strip()}\n```\n\n")
        page.write("| argument | what it is |\n|---|---|\n")
        for action in command._actions:
            if action.dest == "help":
                continue
            names = ", ".join(action.option_strings) or action.dest
            default = (
                f" (default: `{action.default}`)"
                if action.option_strings and action.default not in (None, False)
                else ""
            )
            page.write(f"| `{names}` | {cell(action.help or '')}{default} |\n")
        page.write("\n")
