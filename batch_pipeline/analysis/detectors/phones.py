"""Phone numbers with libphonenumber: international numbers anywhere, national numbers in each
configured region, and numbers that are only *possible* when a word such as "phone" or "Tel."
stands just before them — never dates, times, versions, IP addresses or ids."""

import os
import re
from collections.abc import Iterator
from functools import cache

REGIONS_ENV = "BATCH_PIPELINE_PHONE_REGIONS"
# Where most of this product's users' documents come from; extend with the environment variable.
DEFAULT_REGIONS = "US,GB,DE,FR,ES,IT,NL,BE,CH,AT,IE,PT,SE,NO,DK,FI,PL,CZ,IN,AU,CA,NZ,BR,MX,JP,SG,ZA"
CONTEXT_RE = re.compile(
    r"(?:phone|tel|telephone|mobile|mob|cell|call|fax|ph|whatsapp|sms|contact|hotline|"
    r"telefon|téléphone|portable|móvil|movil|teléfono|telefone|celular|cellulare|telefono|"
    r"telefoon|mobiel|handy|tél|rufnummer|numéro|número|numero|電話|携帯)\W{0,4}(?:\w+\W{1,3}){0,3}$",
    re.IGNORECASE,
)
CONTEXT_WINDOW = 40
# Candidates for a possible number: digits with the usual separators, 7 to 15 digits.
CANDIDATE_RE = re.compile(r"(?<![\w.+/-])\+?\(?\d[\d ().\-/]{5,22}\d(?![\w.]*\d)")
NOT_A_PHONE_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{1,2}:\d{2}|(?:\d+\.){2,}\d+|^\d{1,3}(?:,\d{3})+"
)


ID_JOINERS = set("#-/:._")  # INV-2024-000123, Order #48215430, 10:22:33.006146
SEPARATOR_RE = re.compile(r"\d[ ().-]+\d")


def regions() -> tuple[str, ...]:
    return _parsed_regions(os.environ.get(REGIONS_ENV) or DEFAULT_REGIONS)


@cache
def _parsed_regions(value: str) -> tuple[str, ...]:  # read for every line: parsed once per value
    return tuple(r.strip().upper() for r in value.split(",") if r.strip())


def settings_fingerprint() -> str:
    """What the results depend on besides the library: part of the result-cache key."""
    return "regions=" + ",".join(regions())


@cache
def _phonenumbers():
    import phonenumbers

    return phonenumbers


def find_phones(line: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each phone number in the line."""
    if sum(ch.isdigit() for ch in line) < 7:
        return
    # libphonenumber across every region costs ~27 matcher passes: only for lines with a candidate.
    candidates = [m for m in CANDIDATE_RE.finditer(line) if not NOT_A_PHONE_RE.search(m.group())]
    if not candidates:
        return
    found: list[tuple[int, int]] = []
    if all(m.group().startswith("+") for m in candidates):
        # Numbers that name their own country: one pass finds them, and when it finds every one of
        # them whole, the regions' passes would find nothing more.
        _add_valid_numbers(line, "ZZ", found)
        if not all(any(s <= m.start() and m.end() <= e for s, e in found) for m in candidates):
            found.clear()
    if not found:
        for region in regions():
            _add_valid_numbers(line, region, found)
    for m in candidates:
        span = (m.start(), m.end())
        if _overlaps(span, found):
            continue
        if CONTEXT_RE.search(line[max(0, m.start() - CONTEXT_WINDOW) : m.start()]) and _possible(m.group()):
            found.append(span)
    yield from sorted(found)


def _add_valid_numbers(line: str, region: str, found: list[tuple[int, int]]) -> None:
    phonenumbers = _phonenumbers()
    for match in phonenumbers.PhoneNumberMatcher(line, region, leniency=phonenumbers.Leniency.VALID):
        span = (match.start, match.end)
        if not _overlaps(span, found) and _written_as_a_phone(line, match.start, match.raw_string):
            found.append(span)


def _written_as_a_phone(line: str, start: int, text: str) -> bool:
    """A valid number that is not part of an id, a timestamp or a date, and is written as a phone
    number is (with + or separators), unless a context word stands before it."""
    if NOT_A_PHONE_RE.search(text) or (start > 0 and (line[start - 1] in ID_JOINERS or line[start - 1].isalnum())):
        return False
    if text.startswith("+") or SEPARATOR_RE.search(text):
        return True
    return bool(CONTEXT_RE.search(line[max(0, start - CONTEXT_WINDOW) : start]))


def _possible(text: str) -> bool:
    phonenumbers = _phonenumbers()
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15:
        return False
    for region in regions() if not text.startswith("+") else ("ZZ",):
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return True
    return False


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(start < span[1] and span[0] < end for start, end in spans)
