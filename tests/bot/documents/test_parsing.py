"""An upload's text: each kind of file, and the refusals, as the child process returns them."""

from __future__ import annotations

import pytest

from bot.documents.parsing import DocumentRefused, document_text
from bot.isolation import run_isolated
from tests.support.documents import minimal_pdf


def test_text_and_markdown_are_kept_as_typed() -> None:
    assert document_text(b"\xef\xbb\xbf# Notes\r\n\r\nThe sky  is blue.\r\n", "a.md") == (
        "# Notes\n\nThe sky  is blue."
    )
    with pytest.raises(DocumentRefused, match="not UTF-8 text: line 2"):
        document_text(b"ok\n\xff\xfe", "b.txt")
    with pytest.raises(DocumentRefused, match="binary"):
        document_text(bytes(range(256)) * 4, "c.txt")
    with pytest.raises(DocumentRefused, match="empty"):
        document_text(b"  \n ", "d.txt")


def test_html_is_its_visible_text_a_paragraph_per_block() -> None:
    page = (
        b"<html><head><title>Tower</title><style>p{color:red}</style></head><body>"
        b"<h1>The   tower</h1><p>It is in\n Paris &amp; France.</p><script>alert(1)</script>"
        b"<ul><li>First</li><li>Second<br>line</li></ul></body></html>"
    )
    assert document_text(page, "page.html") == (
        "Tower\n\nThe tower\n\nIt is in Paris & France.\n\nFirst\n\nSecond\nline"
    )


def test_pdf_pages_are_paragraphs() -> None:
    pdf = minimal_pdf(["The Eiffel Tower is in Paris.\nIt was finished in 1889.", "Page (two)."])
    assert document_text(pdf, "tower.pdf") == (
        "The Eiffel Tower is in Paris.\nIt was finished in 1889.\n\nPage (two)."
    )
    with pytest.raises(DocumentRefused, match="no text to read"):
        document_text(minimal_pdf([""]), "scan.pdf")
    with pytest.raises(DocumentRefused, match="not a PDF I can read"):
        document_text(b"%PDF-1.4\nnonsense", "broken.pdf")


def test_other_kinds_are_refused_with_the_kinds_that_work() -> None:
    with pytest.raises(DocumentRefused, match=r"\.pdf"):
        document_text(b"a,b\n1,2\n", "table.csv")


def test_parsing_runs_in_a_child_process() -> None:
    pdf = minimal_pdf(["Warsaw is the capital of Poland."])
    text = run_isolated(document_text, pdf, "w.pdf", refusals=(DocumentRefused,))
    assert text == "Warsaw is the capital of Poland."
    with pytest.raises(DocumentRefused, match=r"password|not a PDF"):
        run_isolated(document_text, b"%PDF-1.7\n\x00", "x.pdf", refusals=(DocumentRefused,))
