"""An uploaded document's text: .txt and .md as they are, .html as its text, .pdf through pypdf.

:func:`document_text` is what :func:`bot.isolation.run_isolated` runs in a child process (so a
crafted file cannot stall or exhaust the bot); it imports nothing of discord or torch. Problems
with the file are :class:`DocumentRefused` sentences naming it. Text files are decoded by
:mod:`models.decoding`, as every other upload is.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import PurePath

from models.decoding import TextDecodeError
from models.decoding import decode_text as decode_upload

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
# A PDF with more pages than this is refused before its text is extracted.
MAX_PDF_PAGES = 5000

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def tidy(text: str) -> str:
    """Line ends as \\n, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class DocumentRefused(ValueError):
    """The upload cannot be used as a document; the message is a sentence naming it."""


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (or UTF-16 with a BOM) text; refused, with the line, when it is not text."""
    try:
        return decode_upload(data, f"`{name}`", wanted="a .txt, .md, .pdf or .html file")
    except TextDecodeError as exc:
        raise DocumentRefused(str(exc)) from None


class _HTMLText(HTMLParser):
    """The visible text of an HTML page, a paragraph per block element."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    BLOCKS = frozenset(
        """address article aside blockquote caption dd details div dl dt fieldset figcaption
        figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary
        table td th tr ul title""".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        if tag == "pre":
            self.preformatted += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        if tag == "pre":
            self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if not self.preformatted:
            data = _SPACES.sub(" ", data.replace("\n", " "))
        self.parts.append(data)

    def text(self) -> str:
        lines = "".join(self.parts).split("\n")
        return tidy("\n".join(line.strip() for line in lines))


def html_text(data: bytes, name: str) -> str:
    """The visible text of an HTML file (UTF-8, else Latin-1), a paragraph per block."""
    try:
        markup = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = data.decode("latin-1")
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return parser.text()


def pdf_text(data: bytes, name: str) -> str:
    """The text of every page of a PDF, a blank line between pages."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentRefused(
                f"`{name}` is password-protected; upload a copy without a password."
            )
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentRefused(f"`{name}` has more than {MAX_PDF_PAGES:,} pages.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentRefused:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DocumentRefused(f"`{name}` is not a PDF I can read ({type(exc).__name__}).") from None
    return "\n\n".join(tidy(page) for page in pages if page.strip())


def document_text(data: bytes, name: str) -> str:
    """The text of the uploaded file ``name``; refused when it has none or its kind is unknown."""
    suffix = PurePath(name).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        # As typed: only line ends are made uniform.
        text = decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n").strip()
    elif suffix in HTML_SUFFIXES:
        text = html_text(data, name)
    elif suffix in PDF_SUFFIXES:
        text = pdf_text(data, name)
        if not text:
            raise DocumentRefused(
                f"`{name}` has no text to read (a scanned PDF holds only pictures of pages)."
            )
    else:
        kinds = ", ".join(sorted(DOCUMENT_SUFFIXES))
        raise DocumentRefused(f"`{name}` is not a document I can read; upload one of {kinds}.")
    if not text:
        raise DocumentRefused(f"`{name}` is empty.")
    return text
