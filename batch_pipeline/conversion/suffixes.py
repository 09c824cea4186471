"""The files a batch reads: text as it is, the rest converted (by suffix, lower case)."""

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
OFFICE_SUFFIXES = frozenset({".docx", ".pptx", ".xlsx", ".html", ".htm"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
CONVERTIBLE_SUFFIXES = frozenset({".pdf", ".eml", *OFFICE_SUFFIXES, *IMAGE_SUFFIXES})
READ_SUFFIXES = TEXT_SUFFIXES | CONVERTIBLE_SUFFIXES
