"""Secrets with detect-secrets: its own plugins (the noisy entropy ones left out) plus ours, and
its keyword detector told that a document may hold config-file lines, so that unquoted
`password: …` / `DB_PASSWORD=…` assignments count (its placeholder filters still apply)."""

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

# Entropy detectors flag ordinary words and hashes; the named detectors are precise.
NOISY_PLUGINS = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
OUR_PLUGINS = [
    "GitHubFineGrainedTokenDetector",
    "EncryptedPrivateKeyDetector",
    "AwsSecretAccessKeyDetector",
    "PasswordAssignmentDetector",
]
ASSIGNMENT_KINDS = {"Secret Keyword", "Password Assignment"}
# detect-secrets picks its keyword patterns by file name: an .ini accepts unquoted values.
CONFIG_FILE_HINT = "document.ini"
PLAIN_HINT = "adhoc-string-scan"
# An unquoted value counts as a password only when it looks like one: one token of 6 or more
# characters with a digit, a symbol or both cases ("Password: please ask IT", "secret: true" do not).
PASSWORD_LIKE_RE = re.compile(r"(?=\S{6,}$)(?=.*(?:\d|[^\w\s]|[a-z].*[A-Z]|[A-Z].*[a-z])).*")
# Values that stand for a secret kept elsewhere: ${DB_PASSWORD}, {{ vault }}, <your password>, $VAR, %(pw)s.
PLACEHOLDER_RE = re.compile(r"\$\{.*\}|\{\{.*\}\}|<.*>|%\(\w+\)s|\$[A-Z_][A-Z0-9_]*|\*+|x+|X+|\.{3,}")


@cache
def configure() -> None:
    """Select the plugins once per process (detect-secrets' settings are global)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import cache_bust, configure_settings_from_baseline, get_settings

    classes = get_mapping_from_secret_type_to_class().values()
    names = sorted({c.__name__ for c in classes} - NOISY_PLUGINS - set(OUR_PLUGINS))
    path = (Path(__file__).parent / "secret_plugins.py").as_uri()
    plugins = [{"name": name} for name in names] + [{"name": name, "path": path} for name in OUR_PLUGINS]
    cache_bust()  # resets detect-secrets' global settings; the next line fills them
    configure_settings_from_baseline({"plugins_used": plugins})
    get_mapping_from_secret_type_to_class.cache_clear()  # now with our plugins' file
    get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")


def scan(line: str) -> Iterator[tuple[str, str]]:
    """(type, value) of each secret detect-secrets finds in the line."""
    from detect_secrets.core.scan import _is_filtered_out, _scan_line, get_code_snippet, get_plugins

    configure()
    context = get_code_snippet(lines=[line], line_number=1)
    for plugin in get_plugins():
        name = plugin.__class__.__name__
        if name in OUR_PLUGINS:  # precise patterns: detect-secrets' filters (e.g. "starts with $") do not apply
            found = plugin.analyze_line(filename=PLAIN_HINT, line=line, line_number=0, context=context)
        else:
            hint = CONFIG_FILE_HINT if name == "KeywordDetector" else PLAIN_HINT
            found = [
                secret
                for secret in _scan_line(plugin=plugin, filename=hint, line=line, line_number=0, context=context,
                                         enable_eager_search=True)
                if not _is_filtered_out(required_filter_parameters=["context"], filename=secret.filename,
                                        secret=secret.secret_value, plugin=plugin, line=line, context=context)
            ]  # fmt: skip
        for secret in found:
            value = secret.secret_value or ""
            if secret.type not in ASSIGNMENT_KINDS or _looks_like_a_password(value):
                yield secret.type, value


def _looks_like_a_password(value: str) -> bool:
    return bool(PASSWORD_LIKE_RE.fullmatch(value)) and not PLACEHOLDER_RE.fullmatch(value)
