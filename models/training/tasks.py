"""The training task table: everything that differs between fine-tuning tasks, one entry each.

Like transformers' ``SUPPORTED_TASKS``, :data:`TASKS` maps each :class:`TrainTask` to a
:class:`TaskSpec`: how its data is read (from a file's text and from the rows of a hub split),
which Auto model class it trains and whether the label set sizes the model's head, how
examples become features, the data collator, the metrics and the primary metric, and which
served task a finished model replaces. Dataset loading and the training worker look a task
up once with :func:`task_spec` and use its entry; adding a task means writing its parser and
feature functions and one more entry here. What an example shows as a sample, and which
label values it uses, belongs to its example type (``models.training.datasets.types``).

Nothing heavy loads here: transformers and numpy are imported inside the functions that
need them, so the bot can import this table cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from models.specs import Task
from models.training import features
from models.training.datasets.causal import causal_from_rows, parse_causal
from models.training.datasets.classification import (
    classification_from_rows,
    parse_classification,
)
from models.training.datasets.qa import parse_qa, qa_from_rows
from models.training.datasets.tokens import parse_tokens, tokens_from_rows
from models.training.datasets.types import ColumnSpec, DataFormat, ParsedDataset, Row, TrainTask

if TYPE_CHECKING:
    from models.training.features import FeatureList, QAFeatureMap


class TextParser(Protocol):
    """(text, format, source name, columns; at most ``max_rows`` examples) -> dataset."""

    def __call__(
        self,
        text: str,
        fmt: DataFormat,
        source: str,
        columns: ColumnSpec,
        *,
        max_rows: int | None = None,
    ) -> ParsedDataset: ...


# (rows, header, format, source name, columns) -> dataset
RowsParser = Callable[[Sequence[Row], Sequence[str], DataFormat, str, ColumnSpec], ParsedDataset]


@dataclass(frozen=True)
class Encoded:
    """One split's model features, and what the metrics need to read predictions back."""

    features: FeatureList
    # Question answering: the example and the context offsets of each window.
    qa_map: QAFeatureMap | None = None


@dataclass(frozen=True)
class EvalSet:
    """The validation data a metrics function scores predictions against."""

    examples: Sequence[Any]
    encoded: Encoded
    id2label: Mapping[int, str]


# (examples, tokenizer, label2id, max length) -> features
Encoder = Callable[[Sequence[Any], Any, Mapping[str, int], int], Encoded]
# (validation data, the Trainer's EvalPrediction) -> metrics
MetricsFn = Callable[[EvalSet, Any], dict[str, float]]


@dataclass(frozen=True)
class TaskSpec:
    """What one fine-tuning task does differently from the others."""

    task: TrainTask
    served_as: Task  # the served task whose model a finished one replaces
    parse_text: TextParser
    parse_rows: RowsParser
    model_class: str  # the transformers Auto class, by name (resolved by auto_model)
    head_from_labels: bool  # the label set sizes the head: num_labels, id2label, label2id
    needs_fast_tokenizer: bool  # word ids and character offsets come only from fast tokenizers
    encode: Encoder
    collator: Callable[[Any], Any]  # tokenizer -> data collator
    metrics: MetricsFn | None  # None: the eval loss is all the Trainer reports
    primary_metric: str  # "the" eval metric: progress lines, the curve, the job summary
    # Trainer label_names when the targets are not in "labels".
    label_names: tuple[str, ...] | None = None
    # Metrics derived from the Trainer's eval metrics in place (perplexity from the loss).
    derive_metrics: Callable[[dict[str, Any]], object] | None = None

    def auto_model(self) -> Any:
        """The transformers Auto class (imports transformers)."""
        import transformers

        return getattr(transformers, self.model_class)


def task_spec(task: TrainTask) -> TaskSpec:
    """The table entry of ``task``."""
    return TASKS[task]


# --------------------------------------------------------------------------- features


def _encode_classification(
    examples: Sequence[Any], tokenizer: Any, label2id: Mapping[str, int], max_length: int
) -> Encoded:
    return Encoded(features.classification_features(examples, tokenizer, label2id, max_length))


def _encode_tokens(
    examples: Sequence[Any], tokenizer: Any, label2id: Mapping[str, int], max_length: int
) -> Encoded:
    return Encoded(features.token_features(examples, tokenizer, label2id, max_length))


def _encode_qa(
    examples: Sequence[Any], tokenizer: Any, label2id: Mapping[str, int], max_length: int
) -> Encoded:
    windows, qa_map = features.qa_features(examples, tokenizer, max_length)
    return Encoded(windows, qa_map)


def _encode_causal(
    examples: Sequence[Any], tokenizer: Any, label2id: Mapping[str, int], max_length: int
) -> Encoded:
    return Encoded(features.causal_features(examples, tokenizer, max_length))


# --------------------------------------------------------------------------- collators


def _padding_collator(tokenizer: Any) -> Any:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def _token_collator(tokenizer: Any) -> Any:
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer)


def _default_collator(tokenizer: Any) -> Any:
    """Features are already of one length (QA windows padded, LM blocks cut to size)."""
    from transformers import default_data_collator

    return default_data_collator


# --------------------------------------------------------------------------- metrics


def _classification_metrics(eval_set: EvalSet, prediction: Any) -> dict[str, float]:
    from models.training.metrics import classification_metrics

    return classification_metrics(prediction.predictions, prediction.label_ids)


def _token_metrics(eval_set: EvalSet, prediction: Any) -> dict[str, float]:
    from models.training.metrics import token_metrics

    return token_metrics(prediction.predictions, prediction.label_ids, eval_set.id2label)


def _qa_metrics(eval_set: EvalSet, prediction: Any) -> dict[str, float]:
    from models.training.metrics import qa_predictions, squad_scores

    assert eval_set.encoded.qa_map is not None
    start_logits, end_logits = prediction.predictions[:2]
    texts = qa_predictions(start_logits, end_logits, eval_set.encoded.qa_map, eval_set.examples)
    return squad_scores(texts, eval_set.examples)


def _add_perplexity(metrics: dict[str, Any]) -> object:
    from models.training.metrics import add_perplexity

    return add_perplexity(metrics)


# --------------------------------------------------------------------------- the table


TASKS: Mapping[TrainTask, TaskSpec] = {
    TrainTask.TEXT_CLASSIFICATION: TaskSpec(
        task=TrainTask.TEXT_CLASSIFICATION,
        served_as=Task.SENTIMENT,
        parse_text=parse_classification,
        parse_rows=classification_from_rows,
        model_class="AutoModelForSequenceClassification",
        head_from_labels=True,
        needs_fast_tokenizer=False,
        encode=_encode_classification,
        collator=_padding_collator,
        metrics=_classification_metrics,
        primary_metric="accuracy",
    ),
    TrainTask.TOKEN_CLASSIFICATION: TaskSpec(
        task=TrainTask.TOKEN_CLASSIFICATION,
        served_as=Task.NER,
        parse_text=parse_tokens,
        parse_rows=tokens_from_rows,
        model_class="AutoModelForTokenClassification",
        head_from_labels=True,
        needs_fast_tokenizer=True,
        encode=_encode_tokens,
        collator=_token_collator,
        metrics=_token_metrics,
        primary_metric="f1",
    ),
    TrainTask.QUESTION_ANSWERING: TaskSpec(
        task=TrainTask.QUESTION_ANSWERING,
        served_as=Task.QA,
        parse_text=parse_qa,
        parse_rows=qa_from_rows,
        model_class="AutoModelForQuestionAnswering",
        head_from_labels=False,
        needs_fast_tokenizer=True,
        encode=_encode_qa,
        collator=_default_collator,
        metrics=_qa_metrics,
        primary_metric="f1",
        label_names=("start_positions", "end_positions"),
    ),
    TrainTask.CAUSAL_LM: TaskSpec(
        task=TrainTask.CAUSAL_LM,
        served_as=Task.GENERATION,
        parse_text=parse_causal,
        parse_rows=causal_from_rows,
        model_class="AutoModelForCausalLM",
        head_from_labels=False,
        needs_fast_tokenizer=False,
        encode=_encode_causal,
        collator=_default_collator,
        metrics=None,
        primary_metric="perplexity",
        derive_metrics=_add_perplexity,
    ),
}
