"""Text classification data: columns, pairs, labels, headerless TSV (models.training.datasets.classification)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.training.datasets import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    TrainTask,
    check_validation,
    parse_dataset,
)

CLS = TrainTask.TEXT_CLASSIFICATION


def test_sst2_train_and_dev_columns_are_detected(shared_data: Path) -> None:
    train = parse_dataset(shared_data / "sst2" / "train.tsv", CLS)
    dev = parse_dataset(shared_data / "sst2" / "dev.tsv", CLS)
    assert train.format is DataFormat.TSV
    assert len(train) == 67_349 and len(dev) == 872
    assert train.labels == dev.labels == ("0", "1")
    assert dict(train.columns) == {"text": "sentence", "label": "label"}
    assert dict(dev.columns) == {"text": "content", "label": "label"}
    # CRLF line ends do not leak into the text
    assert not any(ex.text.endswith("\r") for ex in train.examples[:100])
    assert train.examples[0].text == "hide new secretions from the parental units"
    check_validation(train, dev)


def test_mrpc_shipped_as_txt_is_recognised_as_pairs(shared_data: Path, tmp_path: Path) -> None:
    # The MSRP corpus ships as tab-separated .txt; the extension must not matter.
    data = (shared_data / "mrpc" / "train.tsv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the real file has a UTF-8 BOM
    copy = tmp_path / "msr_paraphrase_train.txt"
    copy.write_bytes(data)
    parsed = parse_dataset(copy, CLS)
    assert parsed.format is DataFormat.TSV
    assert len(parsed) == 3_668
    assert dict(parsed.columns) == {
        "text": "#1 String",
        "text_pair": "#2 String",
        "label": "Quality",
    }
    assert parsed.labels == ("0", "1")
    first = parsed.examples[0]
    # Raw quote characters survive (no CSV quoting applied to MRPC).
    assert first.text.startswith('Amrozi accused his brother, whom he called "the witness"')
    assert first.text_pair is not None and first.text_pair.startswith("Referring to him")
    assert first.line == 2


def test_csv_with_bom_crlf_and_quoted_commas() -> None:
    data = (
        b'\xef\xbb\xbfreview,sentiment\r\n"Great, really great",pos\r\n'
        b'"Bad ""awful"" film",neg\r\nfine,pos\r\n'
    )
    parsed = parse_dataset(data, CLS, filename="reviews.csv")
    assert parsed.format is DataFormat.CSV
    assert dict(parsed.columns) == {"text": "review", "label": "sentiment"}
    assert [ex.text for ex in parsed.examples] == [
        "Great, really great",
        'Bad "awful" film',
        "fine",
    ]
    assert [ex.line for ex in parsed.examples] == [2, 3, 4]
    assert parsed.labels == ("neg", "pos")


def test_jsonl_with_explicit_columns_and_int_labels() -> None:
    rows = [{"q": f"text {i}", "y": i % 3} for i in range(6)]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    parsed = parse_dataset(data, CLS, columns=ColumnSpec(text="q", label="y"))
    assert parsed.format is DataFormat.JSONL
    assert parsed.labels == ("0", "1", "2")
    assert parsed.examples[4].label == "1"


def test_explicit_column_missing_lists_the_columns() -> None:
    data = b"sentence\tlabel\nhello\t1\nbye\t0\n"
    with pytest.raises(DatasetError, match=r"no text column 'body'.*'sentence', 'label'"):
        parse_dataset(data, CLS, filename="d.tsv", columns=ColumnSpec(text="body"))


def test_undetectable_columns_say_how_to_fix() -> None:
    data = b"foo,bar,baz\na,b,c\nd,e,f\n"
    with pytest.raises(DatasetError, match=r"couldn.t find the text column.*explicitly"):
        parse_dataset(data, CLS, filename="d.csv")


def test_missing_label_names_the_line() -> None:
    data = b"label\tsentence\r\n1\tgood\r\n\tbad\r\n"
    with pytest.raises(DatasetError, match=r"line 3 has no label"):
        parse_dataset(data, CLS, filename="d.tsv")


def test_single_label_is_refused() -> None:
    with pytest.raises(DatasetError, match="at least two different labels"):
        parse_dataset(b"text\tlabel\na\tx\nb\tx\n", CLS)


def test_headerless_two_column_tsv() -> None:
    data = b"1\ta fine film\n0\ta dull film\n1\tgreat fun\n"
    parsed = parse_dataset(data, CLS)
    assert [ex.label for ex in parsed.examples] == ["1", "0", "1"]
    assert parsed.examples[0].text == "a fine film"
    assert parsed.examples[0].line == 1


def test_classification_refuses_conll() -> None:
    with pytest.raises(DatasetError, match="looks like CoNLL"):
        parse_dataset(b"EU B-ORG\nrejects O\n", CLS)


def test_label_names_replace_label_values() -> None:
    data = b"label\tsentence\n0\tawful film\n1\tlovely film\n1\tgreat\n0\tbad\n"
    parsed = parse_dataset(
        data,
        TrainTask.TEXT_CLASSIFICATION,
        filename="sst.tsv",
        columns=ColumnSpec(label_names="0=negative, 1=positive"),
    )
    assert parsed.labels == ("negative", "positive")
    assert [ex.label for ex in parsed.examples] == ["negative", "positive", "positive", "negative"]


@pytest.mark.parametrize("names", ["0:negative", "0=negative,0=bad", "0=same,1=same", "=x"])
def test_malformed_label_names_are_refused(names: str) -> None:
    data = b"label\tsentence\n0\tawful film\n1\tlovely film\n"
    with pytest.raises(DatasetError, match="Label names"):
        parse_dataset(
            data,
            TrainTask.TEXT_CLASSIFICATION,
            filename="sst.tsv",
            columns=ColumnSpec(label_names=names),
        )
