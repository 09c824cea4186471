"""Payment card numbers: Luhn-valid, and in an issuer's range with one of its lengths (the IIN
table below, from the card networks' published ranges)."""

import re
from collections.abc import Iterator

# (first digits: inclusive range as strings of equal length, lengths, brand)
ISSUER_RANGES: list[tuple[str, str, range, str]] = [
    ("4", "4", range(13, 20), "Visa"),
    ("51", "55", range(16, 17), "Mastercard"),
    ("2221", "2720", range(16, 17), "Mastercard"),
    ("34", "34", range(15, 16), "Amex"),
    ("37", "37", range(15, 16), "Amex"),
    ("6011", "6011", range(16, 20), "Discover"),
    ("644", "649", range(16, 20), "Discover"),
    ("65", "65", range(16, 20), "Discover"),
    ("35", "35", range(16, 20), "JCB"),  # 3528-3589 assigned; the rest of 35 issued as JCB in the past
    ("2131", "2131", range(15, 16), "JCB"),
    ("1800", "1800", range(15, 16), "JCB"),
    ("300", "305", range(14, 20), "Diners Club"),
    ("36", "36", range(14, 20), "Diners Club"),
    ("38", "39", range(14, 20), "Diners Club"),
    ("50", "50", range(12, 20), "Maestro"),
    ("56", "69", range(12, 20), "Maestro"),
    ("62", "62", range(16, 20), "UnionPay"),
    ("2200", "2204", range(16, 20), "Mir"),
    ("60", "60", range(16, 17), "RuPay"),
    ("81", "82", range(16, 17), "RuPay"),
    ("508", "508", range(16, 17), "RuPay"),
    ("1", "1", range(15, 16), "UATP"),
    ("506099", "506198", range(16, 20), "Verve"),
    ("650002", "650027", range(16, 20), "Verve"),
    ("9792", "9792", range(16, 17), "Troy"),
]
# Digits in groups separated by one space or hyphen, 12 to 19 digits, not part of a longer run.
CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d-])")


def issuer(digits: str) -> str | None:
    """The brand whose range and lengths the number fits: the longest prefix, then the narrowest range."""
    fitting = [
        ((len(low), int(low) - int(high)), brand)
        for low, high, lengths, brand in ISSUER_RANGES
        if low <= digits[: len(low)] <= high and len(digits) in lengths
    ]
    return max(fitting)[1] if fitting else None


def find_cards(line: str) -> Iterator[tuple[int, int, str]]:
    from stdnum import luhn

    for m in CARD_RE.finditer(line):
        digits = re.sub(r"\D", "", m.group())
        if luhn.is_valid(digits) and (brand := issuer(digits)):
            yield m.start(), m.end(), brand
