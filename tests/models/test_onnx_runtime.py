"""Encoder runtimes: ONNX Runtime in fp32 and int8 answer as torch does, within tolerance;
conversions are cached by weights, rebuilt when stale, and torch serves when a check fails."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import onnx_runtime
from models.loading import LoadedModel, load_model
from models.onnx_runtime import OnnxEncoder, Tolerance, cache_folder
from models.refs import ModelRef
from models.requests import ClassifyRequest, EmbedRequest, NERRequest, QARequest
from models.runners import process_batch
from models.specs import Task, default_spec
from tests.support.models import (
    build_tiny_embedding,
    build_tiny_ner,
    build_tiny_qa,
    build_tiny_sentiment,
)

TEXTS = (
    "The film was a delight from start to finish.",
    "Angela Merkel met Emmanuel Macron in Berlin last week to discuss trade.",
    "no",
)
REQUESTS: dict[Task, list[Any]] = {
    Task.SENTIMENT: [ClassifyRequest(text, top_k=2) for text in TEXTS],
    Task.NER: [NERRequest(text) for text in TEXTS],
    Task.QA: [
        QARequest("Who met Macron?", TEXTS[1]),
        QARequest("Where did they meet?", TEXTS[1] + " " + TEXTS[0]),
    ],
    Task.EMBEDDING: [EmbedRequest(TEXTS), EmbedRequest((TEXTS[1],))],
}
BUILDERS: dict[Task, Callable[..., Path]] = {
    Task.SENTIMENT: build_tiny_sentiment,
    Task.NER: build_tiny_ner,
    Task.QA: build_tiny_qa,
    Task.EMBEDDING: build_tiny_embedding,
}


@pytest.fixture(autouse=True)
def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the tiny sentiment model's tests (each export takes seconds)."""
    return tmp_path_factory.mktemp("onnx")


def _load(task: Task, folder: Path, cache: Path, runtime: str) -> LoadedModel:
    spec = default_spec(task, str(folder), runtime=runtime, runtime_cache=str(cache))
    return load_model(spec, ModelRef(kind="local", location=str(folder)))


def _outputs(loaded: LoadedModel, task: Task) -> list[Any]:
    """The runner's forward outputs for the task's requests (what the runtime computes)."""
    runner = _runner(loaded)
    rows = []
    for request in REQUESTS[task]:
        rows.extend(runner.rows(runner.prepare(request)))
    return list(runner.forward(rows))


def _runner(loaded: LoadedModel) -> Any:
    from models.tasks import task_info

    cls = task_info(loaded.spec.task).runner_class()
    return cls(loaded.model, loaded.tokenizer, loaded.spec)


def _flat(output: Any) -> np.ndarray:
    if isinstance(output, (list, tuple)):
        return np.concatenate([np.asarray(part, dtype=np.float64).ravel() for part in output])
    return np.asarray(output, dtype=np.float64).ravel()


def _assert_close(reference: list[Any], got: list[Any], tolerance: Tolerance) -> None:
    assert len(reference) == len(got)
    for a, b in zip(reference, got, strict=True):
        a, b = _flat(a), _flat(b)
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(a).max()))
        assert float(np.abs(a - b).max()) / scale <= tolerance.max_abs
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= tolerance.min_cosine


def _compare(task: Task, folder: Path, cache: Path, runtime: str) -> None:
    reference = load_model(
        default_spec(task, str(folder)), ModelRef(kind="local", location=str(folder))
    )
    converted = _load(task, folder, cache, runtime)
    assert isinstance(converted.model, OnnxEncoder), "the converted model did not pass its check"
    _assert_close(
        _outputs(reference, task), _outputs(converted, task), onnx_runtime.TOLERANCES[runtime]
    )
    if runtime == "onnx":  # fp32: the same answers, not just close outputs
        want = process_batch(_runner(reference), REQUESTS[task])
        got = process_batch(_runner(converted), REQUESTS[task])
        for a, b in zip(want, got, strict=True):
            assert not isinstance(a, Exception) and not isinstance(b, Exception)
            assert _answers(a) == _answers(b)


def _answers(result: Any) -> Any:
    """A result with its scores rounded (fp32 runtimes differ in the last digits)."""
    if hasattr(result, "label"):
        return result.label, round(result.score, 4)
    if hasattr(result, "entities"):
        return [
            (e.word, e.entity_group, e.start, e.end, round(e.score, 4)) for e in result.entities
        ]
    if hasattr(result, "answers"):
        return [(a.text, a.start, a.end, round(a.score, 4)) for a in result.answers]
    return [np.round(np.frombuffer(v, dtype="<f4"), 4).tolist() for v in result.vectors]


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_sentiment_runs_on_each_runtime_as_on_torch(
    tiny_sentiment_dir: Path, shared_cache: Path, runtime: str
) -> None:
    _compare(Task.SENTIMENT, tiny_sentiment_dir, shared_cache, runtime)


@pytest.mark.slow
@pytest.mark.parametrize("task", [Task.NER, Task.QA, Task.EMBEDDING])
def test_every_encoder_task_runs_on_onnx_and_int8_as_on_torch(task: Task, tmp_path: Path) -> None:
    folder = BUILDERS[task](tmp_path / "model")
    for runtime in ("onnx", "onnx-int8"):  # the second reuses the first's fp32 export
        _compare(task, folder, tmp_path / "onnx", runtime)


def test_a_stale_cached_conversion_is_rebuilt(tmp_path: Path) -> None:
    folder, cache = tmp_path / "model", tmp_path / "onnx"
    build_tiny_sentiment(folder, seed=1)
    first = _load(Task.SENTIMENT, folder, cache, "onnx")
    assert isinstance(first.model, OnnxEncoder)
    converted = cache_folder(cache, first.spec)
    old_print = json.loads((converted / onnx_runtime.SOURCE_FILE).read_text())["fingerprint"]
    # Loaded again with the same weights: the cached conversion serves as it is.
    stamp = (converted / onnx_runtime.FP32_FILE).stat().st_mtime_ns
    again = _load(Task.SENTIMENT, folder, cache, "onnx")
    assert (converted / onnx_runtime.FP32_FILE).stat().st_mtime_ns == stamp
    assert isinstance(again.model, OnnxEncoder)
    # The same folder trained again (other weights): converted again, and answers as torch does.
    build_tiny_sentiment(folder, seed=2)
    fresh = _load(Task.SENTIMENT, folder, cache, "onnx")
    assert isinstance(fresh.model, OnnxEncoder)
    new_print = json.loads((converted / onnx_runtime.SOURCE_FILE).read_text())["fingerprint"]
    assert new_print != old_print
    reference = load_model(
        default_spec(Task.SENTIMENT, str(folder)), ModelRef(kind="local", location=str(folder))
    )
    _assert_close(
        _outputs(reference, Task.SENTIMENT),
        _outputs(fresh, Task.SENTIMENT),
        onnx_runtime.TOLERANCES["onnx"],
    )
    assert not list(cache.glob("*.building-*")) and not list(cache.glob("*.old-*"))


def test_torch_serves_when_the_converted_model_fails_its_check(
    tiny_sentiment_dir: Path,
    shared_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    strict = {**onnx_runtime.TOLERANCES, "onnx": Tolerance(max_abs=-1.0, min_cosine=2.0)}
    monkeypatch.setattr(onnx_runtime, "TOLERANCES", strict)
    with caplog.at_level(logging.WARNING, logger="models.onnx_runtime"):
        loaded = _load(Task.SENTIMENT, tiny_sentiment_dir, shared_cache, "onnx")
    assert isinstance(loaded.model, torch.nn.Module)
    assert any("serves with torch" in record.getMessage() for record in caplog.records)
    [result] = process_batch(_runner(loaded), [ClassifyRequest("fine")])
    assert not isinstance(result, Exception)


def test_a_failed_conversion_falls_back_to_torch_and_is_not_retried(
    tiny_sentiment_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken_export(*args: Any) -> None:
        calls.append(args)
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_runtime, "export_fp32", broken_export)
    for _ in range(2):
        loaded = _load(Task.SENTIMENT, tiny_sentiment_dir, tmp_path, "onnx-int8")
        assert isinstance(loaded.model, torch.nn.Module)
    assert len(calls) == 1


def test_int8_keeps_the_measured_sensitive_layer_in_fp32(
    tiny_sentiment_dir: Path, shared_cache: Path
) -> None:
    import onnx

    loaded = _load(Task.SENTIMENT, tiny_sentiment_dir, shared_cache, "onnx-int8")
    assert isinstance(loaded.model, OnnxEncoder)
    folder = cache_folder(shared_cache, loaded.spec)
    # The float MatMuls of the int8 graph made by the module the pattern names.
    kept = onnx_runtime.int8_exclusions(folder / onnx_runtime.INT8_FILE)
    assert len(kept) == 1  # layer 0's feed-forward output
    graph = onnx.load(str(folder / onnx_runtime.INT8_FILE)).graph
    float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    quantized = {
        node.name.removesuffix("_quant")
        for node in graph.node
        if node.op_type in {"MatMulInteger", "DynamicQuantizeMatMul"}
    }
    assert set(kept) <= float_matmuls and not set(kept) & quantized
    # Every other weight MatMul is int8 (2 layers x 6, less the kept one), the query, key and
    # value projections included: int8's graph fuses attention only as far as
    # MultiHeadAttention, which takes them as inputs (fp32's packs them into Attention).
    assert len(quantized) >= 11
    ops = [node.op_type for node in graph.node]
    assert ops.count("MultiHeadAttention") == 2 and "Attention" not in ops


def test_the_export_is_fused_for_onnx_runtime(tiny_sentiment_dir: Path, shared_cache: Path) -> None:
    import onnx

    loaded = _load(Task.SENTIMENT, tiny_sentiment_dir, shared_cache, "onnx")
    assert isinstance(loaded.model, OnnxEncoder)
    graph = onnx.load(str(cache_folder(shared_cache, loaded.spec) / onnx_runtime.FP32_FILE)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Attention") == 2  # one per layer
    assert "SkipLayerNormalization" in ops and "Softmax" not in ops


def test_a_graph_that_cannot_be_fused_serves_unfused(
    tiny_sentiment_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxscript.rewriter import ort_fusions

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("pattern mismatch")

    monkeypatch.setattr(ort_fusions, "optimize_for_ort", broken)
    loaded = _load(Task.SENTIMENT, tiny_sentiment_dir, tmp_path, "onnx")
    assert isinstance(loaded.model, OnnxEncoder)
    reference = load_model(
        default_spec(Task.SENTIMENT, str(tiny_sentiment_dir)),
        ModelRef(kind="local", location=str(tiny_sentiment_dir)),
    )
    _assert_close(
        _outputs(reference, Task.SENTIMENT),
        _outputs(loaded, Task.SENTIMENT),
        onnx_runtime.TOLERANCES["onnx"],
    )


class _Shifted:
    """Stands in for a converted encoder: torch's token states, with a shift added to one real
    token of each row and taken from another, so the mean-pooled sentence vectors stay torch's
    while single tokens move far."""

    def __init__(self, model: Any, shift: float) -> None:
        self.model = model
        self.shift = shift
        self.inputs = ("input_ids", "attention_mask")
        self.outputs = ("last_hidden_state",)

    def __call__(self, **feeds: torch.Tensor) -> Any:
        with torch.no_grad():
            hidden = self.model(**feeds).last_hidden_state
        hidden[:, 0] += self.shift
        hidden[:, 1] -= self.shift
        return type("Output", (), {"last_hidden_state": hidden})()


def test_an_embedding_model_is_checked_on_its_sentence_vectors(tmp_path: Path) -> None:
    folder = build_tiny_embedding(tmp_path / "model")
    loaded = load_model(
        default_spec(Task.EMBEDDING, str(folder)), ModelRef(kind="local", location=str(folder))
    )
    spec = default_spec(Task.EMBEDDING, str(folder), runtime="onnx-int8")
    model, tokenizer = loaded.model, loaded.tokenizer
    # Token states far apart, sentence vectors equal: what users receive is the same.
    assert onnx_runtime.check(model, _Shifted(model, 3.0), tokenizer, spec) is None  # type: ignore[arg-type]

    # A shift the pooling does not cancel still fails the check.
    class _Drifted(_Shifted):
        def __call__(self, **feeds: torch.Tensor) -> Any:
            out = super().__call__(**feeds)
            out.last_hidden_state[:, 1] += 2 * self.shift  # now both tokens move up
            return out

    problem = onnx_runtime.check(model, _Drifted(model, 3.0), tokenizer, spec)  # type: ignore[arg-type]
    assert problem is not None and problem.startswith("vector differs")
