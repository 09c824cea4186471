"""detect-secrets plugins for formats it does not know (registered by path in secrets.py)."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class GitHubFineGrainedTokenDetector(RegexBasedDetector):
    """GitHub's fine-grained personal access tokens (github_pat_ + 82 characters)."""

    secret_type = "GitHub Fine-Grained Token"
    denylist = [re.compile(r"github_pat_[A-Za-z0-9_]{22,255}")]


class EncryptedPrivateKeyDetector(RegexBasedDetector):
    """PEM private keys detect-secrets' PrivateKeyDetector leaves out (PKCS#8 encrypted, and any
    other '... PRIVATE KEY' header)."""

    secret_type = "PEM Private Key"
    denylist = [re.compile(r"BEGIN (?:ENCRYPTED |[A-Z0-9]+ )?PRIVATE KEY(?: BLOCK)?")]


class AwsSecretAccessKeyDetector(RegexBasedDetector):
    """An AWS secret access key assigned without quotes (detect-secrets' AWS plugin wants quotes)."""

    secret_type = "AWS Secret Access Key"
    denylist = [
        re.compile(r"aws_?secret_?(?:access_?)?key\W{0,3}[:=]\s*['\"]?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", re.I)
    ]


class PasswordAssignmentDetector(RegexBasedDetector):
    """`password: …`, `DB_PASSWORD=…`, `secret = "…"` in YAML, .env, INI, JSON or code, whatever
    the value starts with (detect-secrets' keyword detector skips values that start with a symbol
    or a dollar sign). secrets.py keeps only values that look like a password, not a placeholder."""

    secret_type = "Password Assignment"
    denylist = [
        re.compile(
            r"(?i)(?<![A-Za-z])[A-Za-z0-9_]*?(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token)"
            r"[\"']?\s*[:=]\s*[\"']?([^\s\"']{6,})"
        )
    ]
