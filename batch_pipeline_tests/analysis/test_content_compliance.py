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


@pytest.mark.parametrize(
    "line, category",
    [
        ("card 4111\u200b1111\u200b1111\u200b1111 on file", Category.payment_card),
        (
            "card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
            Category.payment_card,
        ),
        ("write to jane\u200b@example.com today", Category.email),
        ("write to jane@exam\u00adple.com today", Category.email),
        ("call +1\u00a0415\u00a0555\u00a00132 now", Category.phone),
    ],
)
def test_values_hidden_by_invisible_or_compatibility_characters_are_found(line, category):
    (finding,) = analyse(line).findings
    assert finding.category is category
    assert finding.excerpt.startswith(line.split()[0])  # the excerpt shows the original line...
    assert "1111\u200b1111\u200b1111" not in finding.excerpt and "jane" not in finding.excerpt  # ...masked


def test_a_line_with_tens_of_thousands_of_findings_is_analysed_whole():
    """The analyser once compared every finding with every other one on the line (72,000 e-mails:
    199 s); docs/benchmarks.md records the time now."""
    line = " ".join(f"user{i}@example.com" for i in range(20_000))
    result = analyse(line)
    assert len(result.findings) == 20_000 and {f.category for f in result.findings} == {Category.email}


def test_secrets_are_found_anywhere_on_a_very_long_line():
    """Long lines are scanned for secrets in overlapping pieces; a value or an assignment that
    straddles a cut is still found once."""
    filler = " ".join(f"https://example.com/p/{i}" for i in range(600))
    for at in range(0, len(filler), 997):
        line = filler[:at] + ' password = "hunter2-correct-horse" ' + filler[at:] + " AKIAIOSFODNN7EXAMPLE"
        kinds = sorted(f.kind for f in analyse(line).findings)
        assert kinds == ["AWS Access Key", "Secret Keyword"], at


@pytest.mark.parametrize(
    "line",
    [
        "password: hunter2x",
        "DB_PASSWORD=S3cr3t!9",
        "secret = &*v*5UBumG3Pj",
        'db_password = "#r72L%OsQHY"',
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "GITHUB_TOKEN=github_pat_11ABCDEFG0" + "a1B2c3D4e5" * 8,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
    ],
)
def test_secret_formats_in_config_lines_are_found(line):
    assert [f.category.value for f in analyse(line).findings] == ["secret"]


@pytest.mark.parametrize(
    "line",
    [
        "password: <your password>",
        "password=${DB_PASSWORD}",
        "password = $DB_PASSWORD",
        "Password: please ask IT",
        "secret: true",
        "The password policy requires 12 characters.",
        "password: changeme",
    ],
)
def test_placeholders_and_prose_about_passwords_are_not_secrets(line):
    assert analyse(line).findings == []


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111 1111 1111 1111", "Visa"),
        ("5555555555554444", "Mastercard"),
        ("2223003122003222", "Mastercard"),
        ("378282246310005", "Amex"),
        ("6011111111111117", "Discover"),
        ("3530111333300000", "JCB"),
        ("30569309025904", "Diners Club"),
        ("6759649826438453", "Maestro"),
        ("6200000000000005", "UnionPay"),
        ("2200000000000004", "Mir"),
        ("122000000000003", "UATP"),
    ],
)
def test_card_numbers_of_every_issuer_range(number, brand):
    (finding,) = analyse(f"Card: {number}").findings
    assert finding.category.value == "payment_card" and finding.kind == f"{brand}-like card number"


def test_luhn_invalid_and_out_of_range_numbers_are_not_cards():
    assert analyse("Card: 4111 1111 1111 1112").findings == []
    assert analyse("Reference 9111111111111111").findings == []


@pytest.mark.parametrize(
    "line",
    [
        "Call me on +44 20 7946 0958",
        "Tel. 030 901820",
        "Téléphone : 01 42 68 53 00",
        "Phone: (02) 9876 5432",
        "Ring 090-1234-5678 after six",
        "+49 (0) 9141 777631",
        "Telefon: 0341 123456",
    ],
)
def test_phone_numbers_in_international_and_national_formats(line):
    assert [f.category.value for f in analyse(line).findings] == ["phone"]


@pytest.mark.parametrize(
    "line",
    [
        "Order #48215430 shipped on 2024-05-12.",
        "Invoice INV-2024-000123 is due.",
        "Logged at 2019-07-12T01:10:33.006146 by build 4.06.794.",
        "Release v2.14.3 on 12/05/2024 at 10:22.",
        "The server at 192.168.10.24 answered.",
        "Revenue grew to $12,345,678.90.",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_ids_dates_versions_and_amounts_are_not_phones(line):
    assert analyse(line).findings == []


def test_the_phone_regions_are_a_setting_and_part_of_the_cache_key(monkeypatch):
    from batch_pipeline.analysis.registry import catalogue

    model = catalogue().get("content_compliance")
    monkeypatch.setenv("BATCH_PIPELINE_PHONE_REGIONS", "US")
    us_only = model.offline_version()
    assert analyse("Telefon: 030 901820").findings == []  # a German national number needs DE
    monkeypatch.setenv("BATCH_PIPELINE_PHONE_REGIONS", "US,DE")
    assert [f.category.value for f in analyse("Telefon: 030 901820").findings] == ["phone"]
    assert model.offline_version() != us_only


@pytest.mark.parametrize(
    ("line", "passes"),
    [
        ("Call +1 415 555 0100 or +44 20 7946 0958 today.", ["ZZ"]),  # numbers that name their country
        ("Call +1 415 555 0100 or (415) 555-0101 today.", ["every region"]),  # a national number beside them
        ("Benjamim Sousa, +55 68 6163-3276", ["ZZ", "every region"]),  # a number no country takes whole
    ],
)
def test_international_numbers_cost_one_matcher_pass_and_find_what_every_region_finds(monkeypatch, line, passes):
    import phonenumbers

    from batch_pipeline.analysis.detectors import phones

    every_region: list[tuple[int, int]] = []  # what the detector found before its shortcut
    for region in phones.regions():
        phones._add_valid_numbers(line, region, every_region)
    regions_tried = []
    matcher = phonenumbers.PhoneNumberMatcher
    monkeypatch.setattr(phonenumbers, "PhoneNumberMatcher", lambda text, region, **kw: regions_tried.append(region) or matcher(text, region, **kw))  # fmt: skip
    found = list(phones.find_phones(line))
    assert every_region and [span for span in found if span in every_region] == sorted(every_region)
    expected_passes = [r for p in passes for r in (phones.regions() if p == "every region" else [p])]
    assert regions_tried == expected_passes


def test_what_is_found_already_is_not_tried_as_a_phone_number(monkeypatch):
    import phonenumbers

    regions_tried = []
    matcher = phonenumbers.PhoneNumberMatcher
    monkeypatch.setattr(phonenumbers, "PhoneNumberMatcher", lambda text, region, **kw: regions_tried.append(region) or matcher(text, region, **kw))  # fmt: skip
    cards = ", ".join(["4111 1111 1111 1111", "5500 0000 0000 0004", "4012 8888 8888 1881"] * 50)
    assert categories(f"Cards on file: {cards}") == ["payment_card"] * 150
    assert regions_tried == []  # a card-dense line costs libphonenumber nothing
    assert categories("Card 4111 1111 1111 1111, phone (415) 555-0100") == ["payment_card", "phone"]
