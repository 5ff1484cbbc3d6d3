"""Retrieval's parts: the lexical query and the fusion of the two candidate lists."""

from __future__ import annotations

import pytest

from bot.documents.search import fuse, match_expression


def test_the_lexical_query_keeps_the_words_that_matter_in_one_channel() -> None:
    assert match_expression("Which NFL team won Super Bowl 50?", 42) == (
        'channel : c42 AND body : ("nfl" OR "team" OR "won" OR "super" OR "bowl" OR "50")'
    )
    # Only stop words: they are all it has. No words at all: no query.
    assert match_expression("Who is it?", 1) == 'channel : c1 AND body : ("who" OR "is" OR "it")'
    assert match_expression("?!", 1) is None
    # Words that look like FTS5 syntax stay words.
    assert '"near"' in (match_expression('NEAR "AND" OR (x)', 1) or "")


def test_fusion_scales_each_list_and_adds_them_evenly() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.1}
    lexical = {3: 12.0, 4: 2.0}
    fused = dict(fuse(dense, lexical))
    assert fused == pytest.approx({1: 0.5, 2: 0.25, 3: 0.5, 4: 0.0})
    # Ties: the lower passage id first.
    assert [key for key, _ in fuse(dense, lexical)][:2] == [1, 3]


def test_one_list_alone_decides() -> None:
    assert fuse({}, {5: 3.0, 6: 1.0}) == [(5, 1.0), (6, 0.0)]
    assert fuse({7: 0.2}, {}) == [(7, 1.0)]
    assert fuse({}, {}) == []
