"""An analysis definition file (YAML): its key, description, prompt template, output schema,
few-shot examples and summary, validated at load with every problem named by file and line.

    key: contract_terms          # optional: the file's name without .yaml
    description: Parties, dates and notice periods of a contract.
    prompt: |
      You read contracts ...
    schema: {type: object, properties: {...}, required: [...], additionalProperties: false}
    examples: [{document: "...", result: {...}}]
    summary: {counts: [...], lengths: [...], numbers: [...], flagged: {field: ..., equals: ...}}

Its digest (of the key, prompt, schema and examples: what shapes a result) versions the results.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from batch_pipeline.analysis.json_schema import result_model, strict_subset_problems
from batch_pipeline.analysis.prompt_template import template_problems
from batch_pipeline.analysis.summary import SummarySpec

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_FILE_BYTES = 1_000_000


class DefinitionLoader(yaml.SafeLoader):
    """YAML as JSON Schema means it: an unquoted 2024-01-01 stays text (not a date), and only
    true/false are booleans (yes/no/on/off stay text, as in YAML 1.2)."""


DefinitionLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
DefinitionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    document: str
    result: dict[str, Any]


class AnalysisDefinition(BaseModel):
    """What a definition file says, validated; ``origin`` says where it was read from."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    key: str
    description: str
    prompt: str
    output_schema: dict[str, Any] = Field(alias="schema")
    examples: tuple[Example, ...] = ()
    summary: SummarySpec = SummarySpec()
    origin: str = ""
    _digest: str = PrivateAttr("")
    _content_hash: str = PrivateAttr("")

    def model_post_init(self, context: Any) -> None:
        shaping = {
            "key": self.key,
            "prompt": self.prompt,
            "schema": self.output_schema,
            "examples": [e.model_dump() for e in self.examples],
        }
        # Not sorted: the order of a schema's properties is the order an LLM writes them in.
        self._digest = hashlib.sha256(json.dumps(shaping, ensure_ascii=False).encode()).hexdigest()
        self._content_hash = hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()

    @property
    def digest(self) -> str:
        """Of what shapes a result: the key, prompt, schema and examples (not the description,
        the summary or where the file is)."""
        return self._digest

    @property
    def content_hash(self) -> str:
        """Of the whole definition, its description and summary too (computed once: it is frozen)."""
        return self._content_hash


class Problem(BaseModel):
    line: int | None  # 1-based, in the file
    message: str


class DefinitionInvalid(ValueError):
    """A definition file that cannot be used, with every problem found in it."""

    def __init__(self, origin: str, problems: list[Problem], key: str | None = None):
        self.origin = origin
        self.problems = problems
        self.key = key  # the key it would have had, when known
        super().__init__("\n".join(f"{origin}:{p.line or 1}: {p.message}" for p in problems))


def read_definition(path: Path) -> AnalysisDefinition:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DefinitionInvalid(str(path), [Problem(line=None, message=f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DefinitionInvalid(
            str(path), [Problem(line=1, message=f"not UTF-8 text: {e.reason}")], path.stem
        ) from None
    return parse_definition(text, str(path), default_key=path.stem)


def parse_definition(text: str, origin: str, default_key: str | None = None) -> AnalysisDefinition:
    try:
        root = yaml.compose(text, Loader=DefinitionLoader)
        data = yaml.load(text, Loader=DefinitionLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DefinitionInvalid(
            origin, [Problem(line=mark.line + 1 if mark else None, message=f"not YAML: {e}")], default_key
        ) from None
    if not isinstance(data, dict):
        raise DefinitionInvalid(
            origin, [Problem(line=1, message="a definition is a mapping (key: value lines)")], default_key
        )
    data.setdefault("key", default_key)
    key = data.get("key") if isinstance(data.get("key"), str) else default_key
    locate = _Locator(root)
    try:
        definition = AnalysisDefinition.model_validate({**data, "origin": origin})
    except ValidationError as e:
        problems = [Problem(line=locate(err["loc"]), message=_message(err)) for err in e.errors()]
        raise DefinitionInvalid(origin, problems, key) from None
    except Exception as e:  # e.g. a digest over values JSON cannot hold
        raise DefinitionInvalid(origin, [Problem(line=None, message=f"cannot be used: {e}")], key) from None
    try:
        problems = _content_problems(definition, locate)
        definition.digest  # noqa: B018 - computed at validation; here only to be sure it is
    except Exception as e:  # whatever a hostile file finds that the checks above did not: it alone fails
        problems = [Problem(line=None, message=f"cannot be used: {type(e).__name__}: {e}")]
    if problems:
        raise DefinitionInvalid(origin, problems, key)
    return definition


def _message(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if error["type"] == "missing":
        return f"{where} is missing"
    return f"{where}: {error['msg']}"


def _content_problems(definition: AnalysisDefinition, locate: "_Locator") -> list[Problem]:
    problems = []
    if not KEY_PATTERN.match(definition.key):
        problems.append(Problem(line=locate(("key",)), message=f"key {definition.key!r}: lowercase letters, digits, _"))
    schema_problems = strict_subset_problems(definition.output_schema)
    problems += [Problem(line=locate(("schema", *p.path)), message=f"schema: {p.message}") for p in schema_problems]
    prompt_line = locate.value_line(("prompt",))
    for p in template_problems(definition.prompt):
        problems.append(Problem(line=prompt_line + p.line - 1 if prompt_line else None, message=f"prompt: {p.message}"))
    if schema_problems:
        return problems
    problems += [
        Problem(line=locate(("summary", *where)), message=f"summary: {message}")
        for where, message in definition.summary.problems(definition.output_schema)
    ]
    model = result_model(definition.output_schema, definition.key)
    for index, example in enumerate(definition.examples):
        try:
            model.model_validate(example.result)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            problems.append(
                Problem(
                    line=locate(("examples", index, "result", *first["loc"])),
                    message=f"examples[{index}].result does not match the schema: {where}: {first['msg']}",
                )
            )
    return problems


class _Locator:
    """The line of a path of keys and indexes in a composed YAML document (the nearest existing
    ancestor's, when the path ends in something absent)."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def _node(self, path) -> tuple[yaml.Node | None, bool]:
        node, exact = self.root, True
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                return node, False
            node = child
        return node, exact

    def __call__(self, path) -> int | None:
        node, _ = self._node(path)
        if node is None:
            return None
        if isinstance(self.root, yaml.MappingNode) and path:
            # A key's line, rather than its value's, when the value is a mapping or block below it.
            parent, _ = self._node(path[:-1])
            if isinstance(parent, yaml.MappingNode):
                for k, v in parent.value:
                    if v is node:
                        return k.start_mark.line + 1
        return node.start_mark.line + 1

    def value_line(self, path) -> int | None:
        """The line a scalar's text starts on (the line after ``key: |`` for a block scalar)."""
        node, exact = self._node(path)
        if node is None or not exact:
            return None
        block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
        return node.start_mark.line + 1 + (1 if block else 0)
