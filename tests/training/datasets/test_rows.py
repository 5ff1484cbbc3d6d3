"""Row readers: TSV, CSV, JSONL name the line of a malformed row (models.training.datasets.rows)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.training.datasets import DatasetError, TrainTask, parse_dataset

CLS = TrainTask.TEXT_CLASSIFICATION


def test_tsv_row_with_wrong_field_count_names_the_line() -> None:
    data = b"label\tsentence\n1\tgood\n0\tbad\textra field\n1\tok\n"
    with pytest.raises(
        DatasetError, match=r"d\.tsv line 3 has 3 tab-separated fields .* header has 2"
    ):
        parse_dataset(data, CLS, filename="d.tsv")


def test_csv_bad_row_names_the_line() -> None:
    data = b'text,label\n"multi\nline",1\nplain,0\nthree,fields,here\n'
    with pytest.raises(DatasetError, match=r"line 5 has 3 fields"):
        parse_dataset(data, CLS, filename="d.csv")


def test_csv_with_unquoted_commas_names_the_line() -> None:
    data = b"text,label\nfine,1\nbad,0\nnot, quoted, at all,1\nok,0\nyes, really, truly, so,1\n"
    with pytest.raises(DatasetError, match=r"d\.csv line 4 has 4 fields but the header has 2"):
        parse_dataset(data, CLS, filename="d.csv")


def test_jsonl_bad_line_names_the_line() -> None:
    data = b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", label: 1}\n'
    with pytest.raises(DatasetError, match=r"line 3 is not valid JSON"):
        parse_dataset(data, CLS, filename="d.jsonl")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1).filter(
                lambda s: s.strip() == s and s != ""
            ),
            st.sampled_from(["pos", "neg", "neutral"]),
        ),
        min_size=2,
        max_size=20,
    ).filter(lambda rows: len({label for _, label in rows}) >= 2)
)
def test_csv_round_trip(rows: list[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    parsed = parse_dataset(buffer.getvalue().encode(), CLS, filename="r.csv")
    assert [(ex.text, ex.label) for ex in parsed.examples] == rows
