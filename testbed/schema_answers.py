"""An answer that fits a JSON schema of the strict subset, for the loopback server's analyses that have
no offline analyser: deterministic, and drawn from the document where a string can be."""

import re

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]+")


def answer_for_schema(schema: dict, document: str) -> object:
    words = WORD_RE.findall(document) or ["unknown"]
    return _value(schema, words, 0)


def _value(node: dict, words: list[str], depth: int) -> object:
    declared = node.get("type")
    kinds = [k for k in (declared if isinstance(declared, list) else [declared]) if k != "null"]
    kind = kinds[0] if kinds else "string"
    if "enum" in node:
        return node["enum"][depth % len(node["enum"])]
    if kind == "object":
        return {name: _value(sub, words, depth + i) for i, (name, sub) in enumerate(node.get("properties", {}).items())}
    if kind == "array":
        count = max(node.get("minItems", 1), 1)
        return [_value(node.get("items", {}), words, depth + i) for i in range(count)]
    if kind == "boolean":
        return depth % 2 == 0
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum", 0))
        high = node.get("maximum", low + 100)
        value = min(max(low + 1 + depth, low), high)
        return int(value) if kind == "integer" else float(value)
    return _string(node, words, depth)


def _string(node: dict, words: list[str], depth: int) -> str:
    formats = {"date": "2024-03-01", "date-time": "2024-03-01T00:00:00Z", "time": "12:00:00",
               "email": "someone@example.com", "uuid": "00000000-0000-4000-8000-000000000000",
               "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "hostname": "example.com", "duration": "P1D"}  # fmt: skip
    if node.get("format") in formats:
        return formats[node["format"]]
    if "pattern" in node:  # a word of the document, or a piece of one, that the pattern takes
        candidates = [*words, *(w[:3].upper() for w in words), *(w.lower() for w in words), "0", "A"]
        return next((c for c in candidates if re.search(node["pattern"], c)), words[0])
    text = " ".join(words[depth : depth + 3]) or words[0]
    return text[: node.get("maxLength", len(text))]
