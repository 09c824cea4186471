"""document_metadata: title, structure, size, language, links, dates and an extractive summary."""

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from batch_pipeline.analysis.analysis import AttachedAnalyser, PackagedAnalysis

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token


class Heading(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: int
    text: str


class DocumentMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    headings: list[Heading]
    word_count: int
    reading_time_minutes: float
    language: str = Field(description="ISO 639-1 code, 'und' when undetermined")
    links: list[str]
    dates_mentioned: list[str] = Field(description="Dates as written in the document")
    summary: str = Field(description="At most two sentences taken from the document")


WORDS_PER_MINUTE = 200
SUMMARY_SENTENCES = 2
WORD_RE = re.compile(r"\w+(?:['’-]\w+)*")
SENTENCE_END_RE = re.compile(r"(?<=[.!?。])\s+")
URL_RE = re.compile(r"https?://[^\s<>()\[\]\"']+[^\s<>()\[\]\"'.,;:!?]")
MONTHS = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
DATE_PATTERNS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), ("%Y-%m-%d",)),
    (re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b"), ("%m/%d/%Y", "%d/%m/%Y")),
    (re.compile(r"\b\d{1,2}\.\d{1,2}\.\d{4}\b"), ("%d.%m.%Y",)),
    (re.compile(rf"\b{MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?, \d{{4}}\b"), ("%B %d, %Y", "%b %d, %Y")),
    (re.compile(rf"\b\d{{1,2}} {MONTHS} \d{{4}}\b"), ("%d %B %Y", "%d %b %Y")),
]


@cache
def _markdown() -> "MarkdownIt":
    # Imported here (as is py3langid): an LLM run loads this module for its schema only.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def _is_date(text: str, formats: tuple[str, ...]) -> bool:
    cleaned = re.sub(r"(?<=\d)(st|nd|rd|th)", "", text).replace(".,", ",").replace("Sept ", "Sep ")
    for fmt in formats:
        try:
            datetime.strptime(cleaned, fmt)
            return True
        except ValueError:
            continue
    return False


def _plain_text(inline: "Token") -> str:
    parts = [
        c.content if c.type in ("text", "code_inline") else " "
        for c in inline.children or []
        if c.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return " ".join("".join(parts).split())


def find_dates(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for pattern, formats in DATE_PATTERNS:
        found += [(m.start(), m.group()) for m in pattern.finditer(text) if _is_date(m.group(), formats)]
    return list(dict.fromkeys(value for _, value in sorted(found)))


def detect_language(text: str) -> str:
    if len(WORD_RE.findall(text)) < 3:
        return "und"
    import py3langid

    language, _ = py3langid.classify(text)
    return language


def extractive_summary(paragraphs: Sequence[str]) -> str:
    """The sentences whose words are most frequent in the document, in document order."""
    sentences = [s.strip() for p in paragraphs for s in SENTENCE_END_RE.split(p) if len(WORD_RE.findall(s)) >= 3]
    if len(sentences) <= SUMMARY_SENTENCES:
        return " ".join(sentences)

    def words_of(sentence: str) -> list[str]:
        return [w.lower() for w in WORD_RE.findall(URL_RE.sub(" ", sentence))]

    frequencies = Counter(w for s in sentences for w in words_of(s) if len(w) > 3)

    def score(sentence: str) -> float:
        words = words_of(sentence) or [""]
        return sum(frequencies[w] for w in words) / (len(words) ** 0.5)

    best = sorted(range(len(sentences)), key=lambda i: score(sentences[i]), reverse=True)[:SUMMARY_SENTENCES]
    return " ".join(sentences[i] for i in sorted(best))


def analyse(text: str) -> DocumentMetadata:
    tokens = _markdown().parse(text)
    headings: list[Heading] = []
    paragraphs: list[str] = []
    links: list[str] = []
    for index, token in enumerate(tokens):
        if token.type == "inline":
            previous = tokens[index - 1].type if index else ""
            if previous == "heading_open":
                headings.append(Heading(level=int(tokens[index - 1].tag[1]), text=token.content.strip()))
            elif previous == "paragraph_open":
                paragraphs.append(_plain_text(token))
            for child in token.children or []:
                if child.type == "link_open" and str(child.attrs.get("href", "")).startswith(("http", "mailto")):
                    links.append(str(child.attrs["href"]))
    links += URL_RE.findall(text)
    words = WORD_RE.findall(text)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return DocumentMetadata(
        title=headings[0].text if headings else first_line[:120],
        headings=headings,
        word_count=len(words),
        reading_time_minutes=round(len(words) / WORDS_PER_MINUTE, 1),
        language=detect_language(" ".join(paragraphs) or text),
        links=list(dict.fromkeys(links)),
        dates_mentioned=find_dates(text),
        summary=extractive_summary(paragraphs),
    )


# The definition (prompt, schema, summary) is document_metadata.yaml; the code attaches its offline analyser.
ANALYSIS = PackagedAnalysis(
    definition_file=Path(__file__).with_name("document_metadata.yaml"),
    offline=AttachedAnalyser(
        analyse=analyse,
        version="1",
        data_packages=("py3langid", "markdown-it-py"),
    ),
)
