"""Dataset detection, parsing and validation (no torch needed)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.training.datasets import (
    ColumnSpec,
    DataFormat,
    DatasetError,
    TrainTask,
    check_validation,
    detect_format,
    load_hub_dataset,
    parse_dataset,
    sample_examples,
    split_holdout,
)

CLS = TrainTask.TEXT_CLASSIFICATION
NER = TrainTask.TOKEN_CLASSIFICATION
QA = TrainTask.QUESTION_ANSWERING
CLM = TrainTask.CAUSAL_LM


# --------------------------------------------------------------------------- real files


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


def test_conll_train_parses_sentences_and_tags(shared_data: Path) -> None:
    parsed = parse_dataset(shared_data / "conll2003" / "train.txt", NER)
    assert parsed.format is DataFormat.CONLL
    assert len(parsed) == 14_041
    assert parsed.labels[0] == "O"
    assert set(parsed.labels) == {
        "O",
        *(f"{p}-{t}" for p in "BI" for t in ("PER", "ORG", "LOC", "MISC")),
    }
    first = parsed.examples[0]
    assert first.tokens[:3] == ("EU", "rejects", "German")
    assert first.tags[:3] == ("B-ORG", "O", "B-MISC")
    assert first.line == 3


def test_squad_json_parses_questions(shared_data: Path) -> None:
    parsed = parse_dataset(shared_data / "squad" / "dev-v1.1-part-a.json", QA)
    assert parsed.format is DataFormat.SQUAD
    assert len(parsed) == 5_696
    ex = parsed.examples[0]
    answer = ex.answers[0]
    assert ex.context[answer.start : answer.start + len(answer.text)] == answer.text


# --------------------------------------------------------------------------- classification


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


def test_tsv_row_with_wrong_field_count_names_the_line() -> None:
    data = b"label\tsentence\n1\tgood\n0\tbad\textra field\n1\tok\n"
    with pytest.raises(
        DatasetError, match=r"d\.tsv line 3 has 3 tab-separated fields .* header has 2"
    ):
        parse_dataset(data, CLS, filename="d.tsv")


def test_missing_label_names_the_line() -> None:
    data = b"label\tsentence\r\n1\tgood\r\n\tbad\r\n"
    with pytest.raises(DatasetError, match=r"line 3 has no label"):
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


def test_validation_label_unknown_to_training() -> None:
    train = parse_dataset(b"text\tlabel\na\tx\nb\ty\n", CLS, filename="train.tsv")
    val = parse_dataset(b"text\tlabel\na\tx\nb\tz\n", CLS, filename="dev.tsv")
    with pytest.raises(DatasetError, match=r"dev\.tsv line 3: label 'z' does not occur"):
        check_validation(train, val)


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


# --------------------------------------------------------------------------- token classification


def test_conll_as_txt_with_docstart_crlf_and_tabs() -> None:
    data = (
        b"-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n\r\n"
        b"Peter\tB-PER\r\nBlackburn\tI-PER\r\n"
    )
    assert detect_format(data.decode()) is DataFormat.CONLL
    parsed = parse_dataset(data, NER, filename="ner.txt")
    assert [ex.tokens for ex in parsed.examples] == [("EU", "rejects"), ("Peter", "Blackburn")]
    assert [ex.line for ex in parsed.examples] == [3, 6]
    assert parsed.labels == ("O", "B-ORG", "B-PER", "I-PER")


def test_conll_bad_tag_names_the_line() -> None:
    data = b"EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn PERSON\nsays O\n"
    with pytest.raises(DatasetError, match=r"ner\.txt line 5: tag 'PERSON' is not an IOB tag"):
        parse_dataset(data, NER, filename="ner.txt")


def test_conll_line_without_tag_names_the_line() -> None:
    data = b"EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn\n"
    with pytest.raises(DatasetError, match=r"line 5 has only one field"):
        parse_dataset(data, NER, filename="ner.txt")


def test_ner_jsonl_and_length_mismatch() -> None:
    good = b'{"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]}\n{"tokens": ["Bob"], "tags": ["B-PER"]}\n'
    parsed = parse_dataset(good, NER)
    assert parsed.format is DataFormat.JSONL
    assert parsed.labels == ("O", "B-LOC", "B-PER")
    bad = good + b'{"tokens": ["a", "b"], "tags": ["O"]}\n'
    with pytest.raises(DatasetError, match=r"line 3 has 2 tokens but 1 tags"):
        parse_dataset(bad, NER, filename="n.jsonl")


# --------------------------------------------------------------------------- QA and causal LM


def _squad(answer_start: int) -> bytes:
    return json.dumps(
        {
            "data": [
                {
                    "title": "t",
                    "paragraphs": [
                        {
                            "context": "Paris is the capital of France.",
                            "qas": [
                                {
                                    "id": "q1",
                                    "question": "What is the capital of France?",
                                    "answers": [{"text": "Paris", "answer_start": 0}],
                                },
                                {
                                    "id": "q2",
                                    "question": "Capital of what?",
                                    "answers": [{"text": "France", "answer_start": answer_start}],
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()


def test_squad_answer_offsets_are_checked() -> None:
    assert len(parse_dataset(_squad(24), QA)) == 2
    with pytest.raises(
        DatasetError, match=r"question 'q2': the answer 'France' is not at answer_start 3"
    ):
        parse_dataset(_squad(3), QA)


def test_qa_refuses_a_table() -> None:
    with pytest.raises(DatasetError, match="needs SQuAD JSON"):
        parse_dataset(b"text,label\na,1\n", QA)


def test_causal_text_splits_paragraphs() -> None:
    parsed = parse_dataset(b"First para\r\nstill first.\r\n\r\nSecond one.\r\n", CLM)
    assert [ex.text for ex in parsed.examples] == ["First para\nstill first.", "Second one."]
    assert [ex.line for ex in parsed.examples] == [1, 4]


# --------------------------------------------------------------------------- rejected files


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"  \r\n\n", "is empty"),
        (b"PK\x03\x04rest-of-zip", "is a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n", "is a PNG image"),
        (b"text,label\nab\x00cd,1\n", r"binary file \(a zero byte on line 2\)"),
        (b"text,label\nok,1\ncaf\xe9,0\n", r"not UTF-8 text: line 3 has an invalid byte \(0xe9\)"),
    ],
)
def test_unusable_files_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_dataset(data, CLS, filename="upload.csv")


def test_missing_path() -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        parse_dataset(Path("/nonexistent/file.tsv"), CLS)


def test_utf16_with_bom_is_accepted() -> None:
    data = "text\tlabel\r\nhello\t1\r\nbye\t0\r\n".encode("utf-16")
    assert [ex.text for ex in parse_dataset(data, CLS).examples] == ["hello", "bye"]


# --------------------------------------------------------------------------- summary, splits


def test_summary_describes_counts_labels_and_samples(shared_data: Path) -> None:
    summary = parse_dataset(shared_data / "sst2" / "dev.tsv", CLS).summary(n_samples=2)
    assert summary.num_examples == 872
    assert summary.label_counts == (("0", 428), ("1", 444))
    assert len(summary.samples) == 2
    text = summary.describe()
    assert "872 examples" in text and "0 (428)" in text and "e.g. [0]" in text
    with pytest.raises(AttributeError):
        summary.num_examples = 1  # type: ignore[misc]  # frozen


def test_holdout_and_sampling_are_seeded() -> None:
    rows = "".join(f"t{i}\t{i % 2}\n" for i in range(100))
    parsed = parse_dataset(("text\tlabel\n" + rows).encode(), CLS)
    train, val = split_holdout(parsed, 0.1, seed=1)
    assert len(train) == 90 and len(val) == 10
    assert {ex.text for ex in train.examples}.isdisjoint(ex.text for ex in val.examples)
    assert split_holdout(parsed, 0.1, seed=1)[1].examples == val.examples
    sample = sample_examples(parsed, 7, seed=3)
    assert len(sample) == 7 and sample.labels == parsed.labels
    assert sample.examples == sample_examples(parsed, 7, seed=3).examples


# --------------------------------------------------------------------------- hub datasets


def test_hub_dataset_class_labels_become_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    table = datasets.Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "ran"], ["ok"]], "ner_tags": [[1, 2, 0], [0]]}, features=features
    )
    calls: list[tuple[Any, ...]] = []

    def fake_load(name: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((name, config, split))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    parsed = load_hub_dataset("conll2003", NER, config="conll2003", split="validation")
    assert calls == [("conll2003", "conll2003", "validation")]
    assert parsed.format is DataFormat.HUB
    assert parsed.examples[0].tags == ("B-PER", "I-PER", "O")
    assert parsed.source == "conll2003/conll2003 [validation]"


def test_hub_dataset_pairs_and_load_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": datasets.Value("int32"),
        }
    )
    table = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1], "idx": [0, 1]},
        features=features,
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: table)
    parsed = load_hub_dataset("glue", CLS, config="mrpc")
    assert parsed.labels == ("equivalent", "not_equivalent")
    assert parsed.examples[1].text_pair == "d" and parsed.examples[1].label == "equivalent"

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DatasetError, match=r"Couldn't load the hub dataset nope \[train\]: no internet"
    ):
        load_hub_dataset("nope", CLS)


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
