"""Evaluation metrics per task: accuracy/F1, seqeval entity F1, SQuAD EM/F1, perplexity."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.training.datasets.types import QAExample
from models.training.features import IGNORE_INDEX, QAFeatureMap


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and F1: of label id 1 for two labels (GLUE's convention), macro otherwise."""
    preds = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    accuracy = float((preds == labels).mean()) if len(labels) else 0.0
    n_labels = int(np.asarray(logits).shape[-1])
    classes = [1] if n_labels == 2 else list(range(n_labels))
    f1s = []
    for c in classes:
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": accuracy, "f1": float(np.mean(f1s))}


def token_metrics(
    logits: np.ndarray, labels: np.ndarray, id2label: Mapping[int, str]
) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval) over first word pieces, plus tag accuracy."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    preds = np.asarray(logits).argmax(axis=-1)
    true_seqs: list[list[str]] = []
    pred_seqs: list[list[str]] = []
    correct = total = 0
    for pred_row, label_row in zip(preds, np.asarray(labels), strict=True):
        keep = label_row != IGNORE_INDEX
        gold = [id2label[int(x)] for x in label_row[keep]]
        guess = [id2label[int(x)] for x in pred_row[keep]]
        correct += sum(g == p for g, p in zip(gold, guess, strict=True))
        total += len(gold)
        true_seqs.append(gold)
        pred_seqs.append(guess)
    return {
        "precision": float(precision_score(true_seqs, pred_seqs, zero_division=0)),
        "recall": float(recall_score(true_seqs, pred_seqs, zero_division=0)),
        "f1": float(f1_score(true_seqs, pred_seqs, zero_division=0)),
        "accuracy": correct / total if total else 0.0,
    }


def _normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    pred_tokens = _normalize_answer(prediction).split()
    true_tokens = _normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(true_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], examples: Sequence[QAExample]) -> dict[str, float]:
    """Exact match and token F1 in percent, best over each question's gold answers."""
    em = f1 = 0.0
    for prediction, ex in zip(predictions, examples, strict=True):
        golds = [a.text for a in ex.answers]
        em += max(float(_normalize_answer(prediction) == _normalize_answer(g)) for g in golds)
        f1 += max(_f1(prediction, g) for g in golds)
    n = max(1, len(examples))
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def qa_predictions(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    feature_map: QAFeatureMap,
    examples: Sequence[QAExample],
    *,
    n_best: int = 20,
    max_answer_tokens: int = 30,
) -> list[str]:
    """The best-scoring context span for each example, over all of its windows."""
    best: list[tuple[float, str]] = [(-math.inf, "") for _ in examples]
    for f, ex_index in enumerate(feature_map.example_index):
        offsets = feature_map.offsets[f]
        starts = np.argsort(start_logits[f])[::-1][:n_best]
        ends = np.argsort(end_logits[f])[::-1][:n_best]
        context = examples[ex_index].context
        for s in starts:
            if s >= len(offsets) or offsets[s] is None:
                continue
            for e in ends:
                if (
                    e >= len(offsets)
                    or offsets[e] is None
                    or e < s
                    or e - s + 1 > max_answer_tokens
                ):
                    continue
                score = float(start_logits[f][s] + end_logits[f][e])
                if score > best[ex_index][0]:
                    start_char, end_char = offsets[s][0], offsets[e][1]  # type: ignore[index]
                    best[ex_index] = (score, context[start_char:end_char])
    return [text for _, text in best]


def add_perplexity(metrics: dict[str, Any], prefix: str = "eval_") -> dict[str, Any]:
    """Perplexity from the mean cross-entropy loss (capped so it stays finite JSON)."""
    loss = metrics.get(f"{prefix}loss")
    if isinstance(loss, (int, float)):
        metrics[f"{prefix}perplexity"] = math.exp(min(float(loss), 50.0))
    return metrics
