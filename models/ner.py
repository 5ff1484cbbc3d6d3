"""Token classification postprocessing: the pipeline's ``aggregation_strategy="simple"``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.results import Entity


@dataclass(frozen=True)
class TokenPrediction:
    """One (non-special) token: its text, character span and label probabilities."""

    token: str
    start: int
    end: int
    scores: np.ndarray


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    # Labels without a B-/I- prefix continue each other, as in the pipeline.
    return "I", label


def aggregate_simple(
    tokens: Sequence[TokenPrediction],
    id2label: Mapping[int, str],
    tokens_to_string: Callable[[list[str]], str],
    *,
    text: str | None = None,
    ignore_labels: frozenset[str] = frozenset({"O"}),
) -> list[Entity]:
    """Group consecutive tokens into entities like the pipeline's "simple" aggregation.

    Each token takes its argmax label; a token continues the current group when it has the
    same entity type and is not a ``B-``; a group's score is the mean of its tokens' scores.
    The word is ``text[start:end]`` when ``text`` is given (original casing, no "##" pieces
    when a group starts mid-word), else ``tokens_to_string`` of the tokens as the pipeline.
    """
    labelled = []
    for token in tokens:
        best = int(np.argmax(token.scores))
        labelled.append((token, id2label[best], float(token.scores[best])))

    groups: list[list[tuple[TokenPrediction, str, float]]] = []
    for item in labelled:
        if groups:
            bi, tag = _tag(item[1])
            _, last_tag = _tag(groups[-1][-1][1])
            if tag == last_tag and bi != "B":
                groups[-1].append(item)
                continue
        groups.append([item])

    entities = []
    for group in groups:
        entity_group = group[0][1].split("-", 1)[-1]
        if entity_group in ignore_labels or group[0][1] in ignore_labels:
            continue
        entities.append(
            Entity(
                word=(
                    text[group[0][0].start : group[-1][0].end]
                    if text is not None
                    else tokens_to_string([token.token for token, _, _ in group])
                ),
                entity_group=entity_group,
                score=float(np.nanmean([score for _, _, score in group])),
                start=group[0][0].start,
                end=group[-1][0].end,
            )
        )
    return entities


def merge_windows(
    windows: Sequence[Sequence[TokenPrediction]],
) -> list[TokenPrediction]:
    """One prediction per token of a text split into overlapping windows.

    A token seen in several windows keeps the prediction from the window where it has the most
    context on both sides; tokens are identified by their character span.
    """
    best: dict[tuple[int, int, str], tuple[int, TokenPrediction]] = {}
    for window in windows:
        n = len(window)
        for position, token in enumerate(window):
            margin = min(position, n - 1 - position)
            key = (token.start, token.end, token.token)
            if key not in best or margin > best[key][0]:
                best[key] = (margin, token)
    return [token for _, token in sorted(best.values(), key=lambda v: (v[1].start, v[1].end))]
