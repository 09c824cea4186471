import pytest

from batch_pipeline.analysis.content_compliance import Category, RiskLevel, analyse, mask

TICKET = """# Ticket 4821

Customer: Maria Jensen, maria.jensen@example.com
Call back on +1 (415) 555-0132 or 212-555-0199.
"""


def categories(text: str) -> list[str]:
    return [f.category.value for f in analyse(text).findings]


@pytest.mark.parametrize(
    "line, category",
    [
        ("Reach me at jane.doe@example.co.uk any time.", "email"),
        ("Office: +44 20 7946 0958", "phone"),
        ("Card on file: 4111 1111 1111 1111 (expires 09/27)", "payment_card"),
        ("Amex 3782-822463-10005 was declined", "payment_card"),
        ("Transfer to IBAN GB82 WEST 1234 5698 7654 32 by Friday", "iban"),
        ("SSN: 536-22-8145", "ssn"),
        ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "secret"),
        ("token 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", "secret"),
        ('db_password = "Tr0ub4dor&3-billing"', "secret"),
        ("-----BEGIN RSA PRIVATE KEY-----", "secret"),
    ],
)
def test_finds_each_kind_of_sensitive_data(line, category):
    assert categories(f"# Notes\n\n{line}\n") == [category]


@pytest.mark.parametrize(
    "line",
    [
        "Order reference 1234 5678 9012 3456 was shipped.",  # 16 digits, fails Luhn
        "Tracking 4111 1111 1111 1112 is not a card.",  # off by one from a valid test card
        "SSN field left as 000-12-3456 in the template.",  # area 000 is never issued
        "IBAN GB82 WEST 1234 5698 7654 31 has a bad checksum.",
        "The release shipped on 2024-08-20 with 1,234 fixes.",
    ],
)
def test_valid_looking_numbers_that_fail_their_checksum_are_not_flagged(line):
    assert categories(line) == []


def test_document_without_pii_is_compliant():
    result = analyse("# Release notes\n\nDashboards load faster. Exports now stream to disk.\n")
    assert result.compliant is True
    assert result.risk_level is RiskLevel.none
    assert result.findings == []


def test_findings_carry_line_numbers_and_masked_excerpts():
    result = analyse(TICKET)
    assert [(f.category, f.line) for f in result.findings] == [
        (Category.email, 3),
        (Category.phone, 4),
        (Category.phone, 4),
    ]
    for finding in result.findings:
        assert "maria.jensen@" not in finding.excerpt
        assert "555-0132" not in finding.excerpt.replace("***-0132", "")
    assert "m***@example.com" in result.findings[0].excerpt
    assert result.risk_level is RiskLevel.medium
    assert result.compliant is False


def test_an_excerpt_masks_every_finding_on_its_line_not_only_its_own():
    result = analyse("Pay 4111 1111 1111 1111 and mail bob@example.com\n")
    assert len(result.findings) == 2
    for finding in result.findings:
        assert "4111 1111 1111 1111" not in finding.excerpt
        assert "bob@example.com" not in finding.excerpt


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a@example.com", RiskLevel.low),
        ("a@example.com b@example.com c@example.com", RiskLevel.medium),
        ("call +1 415 555 0132", RiskLevel.medium),
        ("SSN 536-22-8145", RiskLevel.high),
        ("", RiskLevel.none),
    ],
)
def test_risk_level(text, expected):
    assert analyse(text).risk_level is expected


@pytest.mark.parametrize(
    "value, category, expected",
    [
        ("jane.doe@example.com", Category.email, "j***@example.com"),
        ("4111 1111 1111 1111", Category.payment_card, "**** **** **** 1111"),
        ("536-22-8145", Category.ssn, "***-**-8145"),
        ("AKIAIOSFODNN7EXAMPLE", Category.secret, "AKIA************"),
    ],
)
def test_mask(value, category, expected):
    assert mask(value, category) == expected


def test_example_runbook_secrets_are_never_reproduced(tmp_path):
    from batch_pipeline_tests.conftest import EXAMPLE_DOCS

    text = (EXAMPLE_DOCS / "deploy_runbook.md").read_text()
    result = analyse(text)
    assert {f.kind for f in result.findings} >= {"AWS Access Key", "GitHub Token", "Private Key"}
    dumped = result.model_dump_json()
    for secret in ("AKIAIOSFODNN7EXAMPLE", "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", "Tr0ub4dor&3-billing"):
        assert secret not in dumped
