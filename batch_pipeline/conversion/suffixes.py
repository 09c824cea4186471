"""The files a batch reads: text as it is, the rest converted (by suffix, lower case)."""

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
OFFICE_SUFFIXES = frozenset({".docx", ".pptx", ".xlsx", ".html", ".htm"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
CONVERTIBLE_SUFFIXES = frozenset({".pdf", ".eml", *OFFICE_SUFFIXES, *IMAGE_SUFFIXES})
READ_SUFFIXES = TEXT_SUFFIXES | CONVERTIBLE_SUFFIXES


def reading_suffix(filename: str) -> str:
    """The suffix a file is read by: its own, lower case; a dotenv file (.env, .env.local) is text,
    since secrets are what a compliance scan looks for there."""
    name = filename.rsplit("/", 1)[-1].lower()
    if name == ".env" or name.startswith(".env."):
        return ".txt"
    return "." + name.rsplit(".", 1)[-1] if "." in name.lstrip(".") else ""
