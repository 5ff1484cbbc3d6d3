"""Features for each task: label alignment to word pieces, QA windows and their read-back
(models.training.features, with metrics.qa_predictions)."""

from __future__ import annotations


def test_token_label_alignment_first_piece_only() -> None:
    from transformers import BertTokenizer

    from models.training.datasets import TokenExample
    from models.training.features import IGNORE_INDEX, token_features
    from tests.support.models import bert_vocab_dir

    tokenizer = BertTokenizer.from_pretrained(str(bert_vocab_dir()))
    ex = TokenExample(("Blackburnshire", "rejects"), ("B-LOC", "O"))
    (feature,) = token_features([ex], tokenizer, {"O": 0, "B-LOC": 1}, 32)
    pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert len(pieces) > 4  # the first word splits into several pieces
    assert feature["labels"][0] == IGNORE_INDEX  # [CLS]
    assert feature["labels"][1] == 1  # first piece of the first word
    assert all(x == IGNORE_INDEX for x in feature["labels"][2:-2])  # its other pieces
    assert feature["labels"][-2:] == [0, IGNORE_INDEX]  # "rejects", [SEP]


def test_qa_features_mark_answer_tokens() -> None:
    from transformers import BertTokenizer

    from models.training.datasets import Answer, QAExample
    from models.training.features import qa_features
    from models.training.metrics import qa_predictions
    from tests.support.models import bert_vocab_dir

    tokenizer = BertTokenizer.from_pretrained(str(bert_vocab_dir()))
    context = "filler words " * 30 + "The capital of France is Paris."
    ex = QAExample("q", "What is the capital?", context, (Answer("Paris", context.index("Paris")),))
    features, fmap = qa_features([ex], tokenizer, 48)
    assert len(features) > 1  # long context: several windows
    with_answer = [f for f in features if f["start_positions"] != 0]
    assert with_answer
    for f in with_answer:
        tokens = tokenizer.convert_ids_to_tokens(
            f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        )
        assert tokens == ["paris"]
    # Post-processing picks the answer span when the logits point at it.
    import numpy as np

    starts = np.full((len(features), 48), -10.0)
    ends = np.full((len(features), 48), -10.0)
    i = features.index(with_answer[0])
    starts[i, with_answer[0]["start_positions"]] = 10.0
    ends[i, with_answer[0]["end_positions"]] = 10.0
    assert qa_predictions(starts, ends, fmap, [ex]) == ["Paris"]
