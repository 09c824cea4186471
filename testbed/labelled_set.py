"""A labelled set of documents, generated from public formats with Faker: personal data and
secrets in prose and config snippets across locales, clean documents, and decoys (ids, dates,
versions, hashes, Luhn-invalid numbers) that must not be flagged. Seeds 1-99 are for
development; the held-out evaluation uses seed 2026, which no rule was tuned on."""

import base64
import random
import string
import uuid
from dataclasses import dataclass

from faker import Faker

HELD_OUT_SEED = 2026
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_IN", "en_AU", "ja_JP", "pl_PL"]
CARD_TYPES = ["maestro", "mastercard", "visa16", "visa13", "visa19", "amex", "discover", "diners", "jcb15", "jcb16"]
PHONE_CONTEXT = ["Call me on {}", "Phone: {}", "Tel. {}", "Mobile {}", "You can reach the desk at {} (phone).",
                 "Telefon: {}", "Téléphone : {}", "Teléfono: {}", "Cellulare {}", "Fax {}", "Please call {} after 5pm."]  # fmt: skip
PHONE_BARE = ["{name} | {value}", "{name}, {value}", "Emergency line {value} is staffed around the clock."]
CATEGORIES = ["email", "phone", "payment_card", "iban", "ssn", "secret"]


@dataclass(frozen=True)
class LabelledDocument:
    text: str
    categories: frozenset[str]  # what is truly in it
    kind: str  # pii | clean | decoy


def _token(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _secret(fake: Faker, rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    password = fake.password(length=rng.randint(10, 16))
    choices = [
        f"password: {password}",
        f"DB_PASSWORD={password}",
        f"secret = {password}",
        f"passwd={password}",
        f'"password": "{password}"',
        f'db_password = "{password}"',
        f"aws_secret_access_key = {_token(rng, alnum + '/+', 40)}",
        f"AWS_ACCESS_KEY_ID=AKIA{_token(rng, string.ascii_uppercase + string.digits, 16)}",
        f"GITHUB_TOKEN=github_pat_{_token(rng, alnum + '_', 82)}",
        f"token: ghp_{_token(rng, alnum, 36)}",
        f"SLACK_BOT_TOKEN=xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{_token(rng, alnum, 24)}",
        f"stripe_key = sk_live_{_token(rng, alnum, 24)}",
        "-----BEGIN {}PRIVATE KEY-----\n{}\n-----END {}PRIVATE KEY-----".format(
            *(k := rng.choice(["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", ""]),),
            base64.b64encode(rng.randbytes(48)).decode(),
            k,
        ),
    ]
    return rng.choice(choices)


def _value(category: str, fake: Faker, rng: random.Random) -> str:
    if category == "email":
        return f"Write to {fake.email()} for details."
    if category == "phone":
        value = fake.phone_number()
        if rng.random() < 0.7:
            return rng.choice(PHONE_CONTEXT).format(value)
        return rng.choice(PHONE_BARE).format(name=fake.name(), value=value)
    if category == "payment_card":
        number = fake.credit_card_number(card_type=rng.choice(CARD_TYPES))
        if rng.random() < 0.5 and len(number) == 16:
            number = " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return f"The card on file is {number}, expiring {fake.credit_card_expire()}."
    if category == "iban":
        return f"Please transfer the amount to IBAN {_valid_iban(fake)}."
    if category == "ssn":
        return f"Employee SSN: {Faker('en_US').ssn()}."
    return "Config:\n" + _secret(fake, rng)


def _valid_iban(fake: Faker) -> str:
    """Faker's IBAN, when it is one (some locales' are not the country's length); else a German one."""
    from stdnum import iban

    value = fake.iban()
    return value if iban.is_valid(value) else Faker("de_DE").iban()


def _decoy(fake: Faker, rng: random.Random) -> str:
    bad_luhn = str(rng.randint(4 * 10**15, 5 * 10**15 - 1))
    bad_luhn = bad_luhn[:-1] + str((int(bad_luhn[-1]) + 1) % 10) if _luhn_ok(bad_luhn) else bad_luhn
    decoys = [
        f"Order #{rng.randint(10**7, 10**9)} shipped on {fake.date_this_decade().isoformat()}.",
        f"Invoice INV-{rng.randint(2019, 2026)}-{rng.randint(1, 999999):06d} is due.",
        f"Logged at {fake.iso8601()} by build {fake.numerify('#.##.###')}.",
        f"Release v{rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} fixes the cache.",
        f"The server at {fake.ipv4_private()} answered in {rng.randint(5, 900)} ms.",
        f"Request id {uuid.UUID(int=rng.getrandbits(128))}.",
        f"Commit {fake.sha1()} is deployed.",
        f"Reference number {bad_luhn} was rejected.",
        f"ISBN {fake.isbn13()} is out of print.",
        f"Revenue grew to ${rng.randint(1, 99)},{rng.randint(100, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)}.",
        f"Tracking number 1Z{_token(rng, string.ascii_uppercase + string.digits, 16)}.",
        f"Ship to {fake.postcode()} {fake.city()} before {fake.date()}.",
        f"Meeting on {fake.date(pattern='%d/%m/%Y')} at {fake.time(pattern='%H:%M')}.",
    ]
    return " ".join(rng.sample(decoys, 3))


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def labelled_documents(seed: int, count: int) -> list[LabelledDocument]:
    rng = random.Random(seed)
    documents = []
    for i in range(count):
        fake = Faker(rng.choice(LOCALES))
        fake.seed_instance(seed * 100_000 + i)
        prose = [fake.sentence(nb_words=12) for _ in range(rng.randint(2, 5))]
        roll = rng.random()
        if roll < 0.15:
            documents.append(LabelledDocument("\n\n".join(prose), frozenset(), "clean"))
        elif roll < 0.30:
            documents.append(LabelledDocument("\n\n".join([*prose, _decoy(fake, rng)]), frozenset(), "decoy"))
        else:
            categories = rng.sample(CATEGORIES, rng.choice([1, 1, 2, 3]))
            lines = prose + [_value(c, fake, rng) for c in categories]
            rng.shuffle(lines)
            documents.append(LabelledDocument("\n\n".join(lines), frozenset(categories), "pii"))
    return documents


def evaluate(analyse, documents: list[LabelledDocument]) -> dict:
    """Document-level recall and precision per category, and findings on clean and decoy documents."""
    found = [{f.category.value for f in analyse(d.text).findings} for d in documents]
    counts = [len(analyse(d.text).findings) if d.kind != "pii" else 0 for d in documents]
    figures: dict = {}
    for category in CATEGORIES:
        truly = [category in d.categories for d in documents]
        flagged = [category in f for f in found]
        hits = sum(t and f for t, f in zip(truly, flagged, strict=True))
        figures[category] = {
            "documents": sum(truly),
            "recall": hits / max(sum(truly), 1),
            "flagged": sum(flagged),
            "precision": hits / max(sum(flagged), 1),
        }
    kinds = [d.kind for d in documents]
    figures["clean_flagged"] = sum(c for c, k in zip(counts, kinds, strict=True) if k == "clean")
    figures["decoy_max_findings"] = max((c for c, k in zip(counts, kinds, strict=True) if k == "decoy"), default=0)
    figures["decoys_with_findings"] = sum(1 for c, k in zip(counts, kinds, strict=True) if k == "decoy" and c)
    return figures
