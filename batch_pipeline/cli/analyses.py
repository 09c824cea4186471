"""`batch-pipeline models` (the analyses this deployment offers, and the definitions it cannot load)
and `batch-pipeline try-analysis` (an author's check of one definition file before deploying it)."""

import json
import sys
from pathlib import Path

from batch_pipeline.analysis.analysis import compiled
from batch_pipeline.analysis.definition import DefinitionInvalid, read_definition
from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.conversion.formats import convert
from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.conversion.suffixes import CONVERTIBLE_SUFFIXES
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.response_format import ResponseFormatMode, response_format


def analyses_listing() -> list[dict]:
    """Every analysis, loaded or not: key, description, origin, digest, offline, fields, error."""
    loaded = catalogue()
    listing = [
        {
            "key": analysis.key,
            "description": analysis.description,
            "origin": analysis.definition.origin,
            "digest": analysis.digest,
            "offline": analysis.offline is not None,
            "fields": analysis.fields,
            "error": None,
        }
        for analysis in loaded.analyses.values()
    ]
    listing += [
        {"key": b.key, "description": None, "origin": b.origin, "digest": None, "offline": False, "fields": None,
         "error": b.error}
        for b in loaded.broken
    ]  # fmt: skip
    return listing


def list_analyses(output_format: str) -> int:
    listing = analyses_listing()
    if output_format == "json":
        print(json.dumps(listing, indent=2, ensure_ascii=False))
        return 0
    loaded = [item for item in listing if item["error"] is None]
    width = max((len(item["key"]) for item in loaded), default=0)
    for item in loaded:
        offline = " (offline analyser: ai_model local)" if item["offline"] else ""
        print(f"{item['key']:<{width}}  {item['description']}{offline}")
    broken = [item for item in listing if item["error"] is not None]
    if broken:
        print(f"\nNot loaded ({len(broken)}):", file=sys.stderr)
        for item in broken:
            print(f"  {item['error']}", file=sys.stderr)
    return 0


def _document_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix.lower() in CONVERTIBLE_SUFFIXES:
        text, _ = convert(data, path.suffix.lower(), ConversionLimits())
        return text
    return data.decode("utf-8", errors="replace")


def try_definition(path: Path, document: Path | None, instructions: str, output_format: str) -> int:
    """Validate one definition file; with a document, print the messages an LLM would be sent."""
    try:
        definition = read_definition(path)
    except DefinitionInvalid as e:
        for problem in str(e).splitlines():
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    analysis = compiled(definition)
    report: dict = {"key": analysis.key, "digest": analysis.digest, "fields": analysis.fields}
    if document is not None:
        mode = ResponseFormatMode.json_schema
        report["messages"] = build_messages(analysis, instructions, _document_text(document), mode)
        report["response_format"] = response_format(analysis, mode)
    if output_format == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(f"{path}: a valid analysis definition")
    print(f"key: {analysis.key}\ndigest: {analysis.digest}")
    print("fields: " + ", ".join(f"{name} ({kind})" for name, kind in analysis.fields.items()))
    for message in report.get("messages", []):
        print(f"\n--- {message['role']} ---\n{message['content']}")
    return 0
