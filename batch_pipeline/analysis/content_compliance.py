"""content_compliance: PII and secrets, each finding masked and located by line."""

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from batch_pipeline.analysis.analysis import AttachedAnalyser, PackagedAnalysis
from batch_pipeline.analysis.detectors.phones import settings_fingerprint as phone_settings


class Category(StrEnum):
    email = "email"
    phone = "phone"
    payment_card = "payment_card"
    iban = "iban"
    ssn = "ssn"
    secret = "secret"


class RiskLevel(StrEnum):
    none = "none"
    low = "low"
    medium = "medium"
    high = "high"


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Category
    kind: str = Field(description="What was found, e.g. 'AWS Access Key' or 'Visa-like card number'")
    excerpt: str = Field(description="The surrounding text with every finding masked")
    line: int = Field(description="1-based line number in the document")


class ComplianceResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    findings: list[Finding]
    risk_level: RiskLevel
    compliant: bool
    summary: str


HIGH_RISK = {Category.secret, Category.payment_card, Category.iban, Category.ssn}
EXCERPT_RADIUS = 30

EMAIL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN_RE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
SECRET_CHARS_RE = re.compile(r"[A-Za-z0-9_\-./+]")
PEM_HEADER_RE = re.compile(r"-*BEGIN [A-Z ]*PRIVATE KEY-*")

SECRET_SCAN_CHARS = 4096
SECRET_SCAN_OVERLAP = 256
# Pasted text hides values from a plain regex: detection sees the text without these.
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")  # zero-width characters, soft hyphen
NO_BREAK_SPACES = frozenset("\u00a0\u2007\u202f")

PEM_KINDS = {"Private Key", "PEM Private Key"}


Span = tuple[int, int, Category, str]  # start, end, category, kind


class _Spans:
    """Non-overlapping spans, with overlap checks in O(log n): a line with tens of thousands of
    findings must not cost their square."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.spans: list[Span] = []

    def add(self, start: int, end: int, category: Category, kind: str) -> None:
        i = bisect.bisect_right(self._starts, start)
        if (i > 0 and self._ends[i - 1] > start) or (i < len(self._starts) and self._starts[i] < end):
            return  # overlaps a span found earlier, which wins
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self.spans.append((start, end, category, kind))


def _pieces(line: str) -> Iterator[tuple[int, str]]:
    """(offset, piece): the line cut at spaces into pieces of about SECRET_SCAN_CHARS, each
    overlapping the previous one by SECRET_SCAN_OVERLAP so that an assignment is never cut in two.
    detect-secrets' time grows faster than a line's length (30,000 URLs on one line: 24 s whole)."""
    start = 0
    while len(line) - start > SECRET_SCAN_CHARS:
        cut = line.rfind(" ", start + SECRET_SCAN_OVERLAP + 1, start + SECRET_SCAN_CHARS)
        if cut < 0:  # one long token: it goes whole into this piece
            cut = line.find(" ", start + SECRET_SCAN_CHARS)
            if cut < 0:
                break
        yield start, line[start:cut]
        start = cut - SECRET_SCAN_OVERLAP
    yield start, line[start:]


def _secret_spans(line: str, found: _Spans) -> None:
    from batch_pipeline.analysis.detectors import secrets

    for offset, piece in _pieces(line):
        for kind, value in secrets.scan(piece):
            start = piece.find(value) if value else -1
            if start < 0:
                continue
            start += offset
            end = start + len(value)
            if kind in PEM_KINDS:  # the match is the PEM header; keep it as it is
                found.add(start, end, Category.secret, "Private Key")
                continue
            while start > 0 and SECRET_CHARS_RE.match(line[start - 1]):
                start -= 1
            while end < len(line) and SECRET_CHARS_RE.match(line[end]):
                end += 1
            found.add(start, end, Category.secret, kind)


def _line_spans(line: str) -> list[Span]:
    # Imported here: an LLM run loads this module for its schema, never these libraries.
    from stdnum import iban
    from stdnum.us import ssn

    from batch_pipeline.analysis.detectors.cards import find_cards
    from batch_pipeline.analysis.detectors.phones import find_phones

    found = _Spans()
    _secret_spans(line, found)
    for m in IBAN_RE.finditer(line):
        if iban.is_valid(m.group()):
            found.add(m.start(), m.end(), Category.iban, f"IBAN ({m.group()[:2]})")
    for start, end, brand in find_cards(line):
        found.add(start, end, Category.payment_card, f"{brand}-like card number")
    for m in SSN_RE.finditer(line):
        if ssn.is_valid(m.group()):
            found.add(m.start(), m.end(), Category.ssn, "US social security number")
    for m in EMAIL_RE.finditer(line):
        found.add(m.start(), m.end(), Category.email, "e-mail address")
    # What is already found cannot be a phone number too: blanked out, a card-dense line costs
    # libphonenumber nothing for its cards.
    for start, end in find_phones(_blanked(line, found.spans)):
        found.add(start, end, Category.phone, "phone number")
    return sorted(found.spans)


def _blanked(line: str, spans: list[Span]) -> str:
    if not spans:
        return line
    chars = list(line)
    for start, end, _, _ in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def mask(value: str, category: Category) -> str:
    """Hide a sensitive value, keeping just enough to recognise it."""
    if category is Category.email:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if category is Category.secret:
        if PEM_HEADER_RE.fullmatch(value):  # a PEM header names the key; it holds none of it
            return value
        return value[:4] + "*" * min(max(len(value) - 4, 4), 12)
    alnum_positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    keep = set(alnum_positions[-4:])
    return "".join(ch if (i in keep or not ch.isalnum()) else "*" for i, ch in enumerate(value))


def normalise(line: str) -> tuple[str, list[int] | None]:
    """The line as detection sees it — NFKC (full-width digits become digits), zero-width
    characters and soft hyphens removed, no-break spaces as spaces — and, for each of its
    characters, the index of the original character it came from (None: the line is unchanged)."""
    if line.isascii():
        return line, None
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(line):
        if ch in INVISIBLE:
            continue
        seen = " " if ch in NO_BREAK_SPACES else unicodedata.normalize("NFKC", ch)
        chars.append(seen)
        origin.extend([i] * len(seen))
    return "".join(chars), origin


def find_sensitive_data(text: str) -> list[Finding]:
    findings: list[Finding] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        seen, origin = normalise(line)
        spans = _line_spans(seen)
        if not spans:
            continue
        if origin is not None:  # back to the original line: excerpts show it, masked
            spans = [(origin[start], origin[end - 1] + 1, category, kind) for start, end, category, kind in spans]
        masked_parts, positions, cursor, length = [], [], 0, 0
        for start, end, category, _ in spans:
            start = max(start, cursor)
            before, masked = line[cursor:start], mask(line[start:end], category)
            masked_parts += [before, masked]
            length += len(before)
            positions.append((length, length + len(masked)))
            length += len(masked)
            cursor = end
        masked_parts.append(line[cursor:])
        masked_line = "".join(masked_parts)
        for (start, end), (_, _, category, kind) in zip(positions, spans, strict=True):
            lo, hi = max(0, start - EXCERPT_RADIUS), min(len(masked_line), end + EXCERPT_RADIUS)
            excerpt = masked_line[lo:hi].strip()
            findings.append(Finding(category=category, kind=kind, excerpt=excerpt, line=line_number))
    return findings


def risk_level(findings: Sequence[Finding]) -> RiskLevel:
    categories = Counter(f.category for f in findings)
    if any(c in HIGH_RISK for c in categories):
        return RiskLevel.high
    if categories[Category.phone] or categories[Category.email] > 2:
        return RiskLevel.medium
    if categories[Category.email]:
        return RiskLevel.low
    return RiskLevel.none


def analyse(text: str) -> ComplianceResult:
    findings = find_sensitive_data(text)
    counts = Counter(f.category.value for f in findings)
    summary = (
        f"{len(findings)} finding(s): " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        if findings
        else "No personal data or secrets found."
    )
    return ComplianceResult(findings=findings, risk_level=risk_level(findings), compliant=not findings, summary=summary)


# The definition (prompt, schema, summary) is content_compliance.yaml; the code attaches its offline analyser.
ANALYSIS = PackagedAnalysis(
    definition_file=Path(__file__).with_name("content_compliance.yaml"),
    offline=AttachedAnalyser(
        analyse=analyse,
        version="3",  # 2: detection on normalised text; 3: phones across regions, more secrets and card issuers
        data_packages=("phonenumbers", "detect-secrets", "python-stdnum"),
        settings=phone_settings,
    ),
)
