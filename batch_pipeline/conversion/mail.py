"""E-mails (.eml): the headers people write in, the body (HTML bodies as markdown), and each
attachment converted as if it were a file of the batch, one level deep."""

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import PurePath

from batch_pipeline.conversion.limits import ConversionLimits
from batch_pipeline.conversion.office import html_to_markdown

HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date")

ConvertFile = Callable[[bytes, str, ConversionLimits], tuple[str, str]]


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))  # the HTML part is what readers see
    if part is None:
        return ""
    content = part.get_content()
    return html_to_markdown(content) if part.get_content_type() == "text/html" else content


def convert_email(data: bytes, limits: ConversionLimits, convert_attachment: ConvertFile) -> tuple[str, str]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    lines = [f"**{name}:** {message[name]}" for name in HEADERS if message[name]]
    sections = ["\n".join(lines), _body(message).strip()]
    for attachment in message.iter_attachments():
        name = attachment.get_filename() or "unnamed"
        suffix = PurePath(name).suffix.lower()
        payload = attachment.get_payload(decode=True) or b""
        try:
            text, _ = convert_attachment(payload, suffix, limits)
        except Exception as e:  # one attachment that cannot be read leaves the e-mail readable
            text = f"(not converted: {e})"
        sections.append(f"## Attachment: {name}\n\n{text.strip()}")
    return "\n\n".join(s for s in sections if s), "email (Python standard library)"
