"""Encoder models on ONNX Runtime: converted once, cached beside a fingerprint, checked first.

``HFCORD_ENCODER_RUNTIME`` (``ModelSpec.runtime``) picks how the encoder tasks (classification,
NER, QA, embeddings) run their forward pass:

- ``torch``: the transformers model itself;
- ``onnx``: the model exported to ONNX (``torch.onnx.export``, the dynamo exporter), its
  attention, layer norms and GELUs fused into ONNX Runtime's own ops (:func:`fuse_for_ort`),
  run by ONNX Runtime in fp32: the same answers (on the project's 2-core machine, as fast as
  torch; measure with bench/serving.py);
- ``onnx-int8``: that export with its matrix multiplications quantized to int8 (ONNX Runtime's
  dynamic quantization, per-channel weights), except the ones measured to cost accuracy (see
  :data:`INT8_FP32_MODULES`): 1.3-1.65x torch there, answers within a small tolerance.

:func:`prepare_runtime` does it for a model just loaded by torch: the conversion is kept in
``ModelSpec.runtime_cache`` in a folder per model, beside the fingerprint of the weights it was
made from (and of the recipe and tool versions); a model whose weights changed (a fine-tuned
model trained again under the same folder) is converted again. Before it serves, the converted
model must give the torch model's outputs on a few inputs, within the runtime's tolerance;
otherwise (or if conversion fails) a log line says why and the torch model serves.

:class:`OnnxEncoder` stands in for the torch model: called with the padded input tensors, it
returns the task's outputs (``logits``, ``start_logits``/``end_logits``, ``last_hidden_state``)
as torch tensors, and carries the model's ``config``, so the runners need no other change.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from models.runners.common import input_names
from models.runners.embedding import model_pooling, pool
from models.specs import ModelSpec
from models.tasks import Task, task_info

log = logging.getLogger(__name__)

# Bumped whenever the export or quantization recipe changes: cached conversions made by an
# older recipe are then made again.
RECIPE_VERSION = 4  # 3: fused for ORT; 4: int8 keeps q, k, v apart to quantize them
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SOURCE_FILE = "source.json"
# Protobuf files cannot exceed 2 GB: bigger models keep their weights beside the graph.
_EXTERNAL_DATA_BYTES = 1_500_000_000

# Texts the converted model is checked on (against torch) before it serves: short and long,
# padded together and alone, and pairs (as QA reads question and context).
_CHECK_TEXTS = (
    "A gorgeous, witty and moving film.",
    "The committee met in Geneva on Tuesday; Maria Schmidt of the World Health Organization "
    "said the results would be published in the spring, after review by independent experts "
    "in Paris, Nairobi and Buenos Aires.",
    "ok",
)
_CHECK_PAIRS = (
    ("Where did the committee meet?", _CHECK_TEXTS[1]),
    ("Who spoke?", "Maria Schmidt spoke for the organization after the meeting."),
)


class RuntimeUnavailable(Exception):
    """The model cannot run on the chosen runtime; ``str()`` says why (for the log)."""


@dataclass(frozen=True)
class Tolerance:
    """How close a runtime's outputs must be to torch's on the check inputs: each row's
    outputs (over its real tokens) within ``max_abs`` of torch's (scaled by the largest
    output), and pointing the same way (cosine similarity at least ``min_cosine``)."""

    max_abs: float
    min_cosine: float


TOLERANCES: Mapping[str, Tolerance] = {
    "onnx": Tolerance(max_abs=1e-3, min_cosine=0.9999),
    "onnx-int8": Tolerance(max_abs=0.25, min_cosine=0.99),
}


class OnnxEncoder:
    """An exported encoder run by ONNX Runtime, called like the transformers model it replaces
    (only from the device thread, as every model)."""

    def __init__(
        self,
        path: Path,
        *,
        config: Any,
        name_or_path: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        threads: int,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Its threads spin briefly between ops before they sleep, as torch's OpenMP threads
        # do: without spinning, MiniLM on SST-2 served 7-15 % fewer sentences/s here.
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.config = config
        self.name_or_path = name_or_path
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.device = torch.device("cpu")

    def __call__(self, **tensors: torch.Tensor) -> SimpleNamespace:
        feeds = {name: tensors[name].cpu().numpy().astype(np.int64) for name in self.inputs}
        values = self.session.run(list(self.outputs), feeds)
        return SimpleNamespace(
            **{
                name: torch.from_numpy(value)
                for name, value in zip(self.outputs, values, strict=True)
            }
        )


# ----------------------------------------------------------------- the cache


def fingerprint(model: Any) -> str:
    """A digest of the model's weights and configuration, with the recipe and tool versions."""
    import onnxruntime

    digest = hashlib.sha256()
    versions = f"recipe {RECIPE_VERSION} torch {torch.__version__} ort {onnxruntime.__version__}"
    digest.update(versions.encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_folder(root: Path, spec: ModelSpec) -> Path:
    """The folder of ``spec``'s model under ``root``: one per model (not per version of its
    weights), so a stale conversion is replaced rather than kept beside the new one."""
    identity = json.dumps([spec.task, spec.model_id, spec.revision, spec.gguf_file])
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name)[-48:].strip("-.") or "model"
    return root / f"{spec.task}-{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _read_source(folder: Path) -> dict[str, Any]:
    try:
        value = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _replace_folder(folder: Path, built: Path) -> None:
    """Put ``built`` where ``folder`` is, dropping the old one."""
    old = folder.with_name(folder.name + f".old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    built.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------- conversion


def model_inputs(model: Any, tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer outputs the runners feed this model (see ``runners.common.row``)."""
    encoded = tokenizer("probe")
    return tuple(name for name in input_names(model) if name in encoded)


class _Exported(torch.nn.Module):
    """The model as a function of its input tensors to the task's output tensors."""

    def __init__(self, model: Any, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            given["token_type_ids"] = token_type_ids
        out = self.model(**given)
        return tuple(getattr(out, name) for name in self.outputs)


def export_fp32(model: Any, tokenizer: Any, outputs: Sequence[str], path: Path) -> None:
    """Export ``model`` to ONNX at ``path`` as it is (no fusion), batch and sequence length
    left free."""
    inputs = model_inputs(model, tokenizer)
    if inputs[:2] != ("input_ids", "attention_mask"):
        raise RuntimeUnavailable(f"unexpected model inputs {inputs}")
    sample = tokenizer(list(_CHECK_TEXTS[:2]), padding=True, return_tensors="pt")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dims = {name: {0: batch, 1: length} for name in inputs}
    torch.onnx.export(
        _Exported(model, inputs, outputs).eval(),
        tuple(sample[name] for name in inputs),
        str(path),
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_shapes=dims,
        dynamo=True,
        external_data=_weights_apart(model),
        verbose=False,
    )


def _weights_apart(model: Any) -> bool:
    """Whether the model's graph must keep its weights in a file beside it."""
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return size > _EXTERNAL_DATA_BYTES


def fuse_for_ort(
    source: Path, target: Path, *, pack_qkv: bool = True, weights_apart: bool = False
) -> None:
    """Write ``source``'s graph to ``target`` with ONNX Runtime's fused transformer ops
    (onnxscript's ``optimize_for_ort``; ORT's own optimizer does not recognize the dynamo
    exporter's patterns): attention in one op, each residual add with its layer norm, each bias
    with its GELU. With ``pack_qkv`` the query, key and value projections join the attention
    op (``Attention``: fastest in fp32); without, they stay MatMuls in front of a
    ``MultiHeadAttention``, so int8 quantization reaches them too (int8 is 1.15x faster so).
    When fusing fails, ``target`` is the graph as exported (a log line), which serves the same
    answers, slower."""
    import onnx_ir as ir

    data = target.name + ".data" if weights_apart else None
    try:
        from onnxscript.rewriter.ort_fusions import optimize_for_ort

        graph = ir.load(str(source))
        with _qkv_left_apart(not pack_qkv):
            graph, counts = optimize_for_ort(graph)
    except Exception as exc:
        log.info("the exported graph serves unfused (%s: %s)", type(exc).__name__, exc)
        ir.save(ir.load(str(source)), str(target), external_data=data)
        return
    ir.save(graph, str(target), external_data=data)
    log.info("fused for ONNX Runtime: %s", {name: n for name, n in counts.items() if n})


@contextmanager
def _qkv_left_apart(apart: bool) -> Iterator[None]:
    """Within it, onnxscript's fusions stop at ``MultiHeadAttention`` (they skip the step that
    packs the projections into ``Attention``). That step has no switch of its own, so it is
    replaced for the while; if onnxscript renames it, the projections are packed as before
    (int8 slower, same answers) and the test of the int8 graph says so."""
    from onnxscript.rewriter.ort_fusions import _core

    original = getattr(_core, "fuse_attention", None)
    if not apart or original is None:
        yield
        return
    _core.fuse_attention = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        _core.fuse_attention = original


# Layers that onnx-int8 keeps in fp32: patterns on the module names of the exported MatMuls.
# Measured on MiniLM fine-tuned on SST-2 (README, "Performance"): of the 36 MatMuls, keeping the
# first layer's feed-forward output projection in fp32 brought int8's agreement with fp32 on
# SST-2 dev from 98.2 % to 99.2 % (1 of 36 kept, about 5 % of int8's speed); no other single
# group did as much (whole first layer 98.7 %, all attention outputs 98.3 %, all QKV 97.9 %).
# BERT/RoBERTa name it ``layer.0.output.dense``, DistilBERT ``layer.0.ffn.lin2``.
INT8_FP32_MODULES: tuple[str, ...] = (r"\blayer\.0\.(output\.dense|ffn\.lin2)$",)


def module_name(node: Any) -> str:
    """The name of the torch module an exported node came from ("" when unknown), from the
    scopes the dynamo exporter records in the node's metadata."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            # [..., "model.bert.encoder.layer.0.output.dense", "linear_5"]: the op is last.
            return str(scopes[-2]) if isinstance(scopes, list) and len(scopes) >= 2 else ""
    return ""


def int8_exclusions(path: Path, patterns: Sequence[str] = INT8_FP32_MODULES) -> list[str]:
    """The MatMul nodes of ``path`` kept in fp32 when quantizing: those of the modules whose
    names match one of ``patterns``."""
    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and any(re.search(p, module_name(node)) for p in patterns)
    ]


def quantize_int8(
    source: Path, target: Path, fp32_modules: Sequence[str] = INT8_FP32_MODULES
) -> None:
    """Dynamic int8 quantization of ``source``'s matrix multiplications, per-channel weights,
    except those of ``fp32_modules`` (see :func:`int8_exclusions`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=int8_exclusions(source, fp32_modules),
        use_external_data_format=source.stat().st_size > _EXTERNAL_DATA_BYTES,
    )


class _FromQuantizer(logging.Filter):
    """Drops the quantizer's notes, which it logs on the root logger at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname.replace(os.sep, "/")


@contextmanager
def _quiet_tools() -> Iterator[None]:
    """The exporter and quantizer narrate every node and rewrite; the bot logs only its own
    line per conversion (failures still raise)."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    quantizer_notes = _FromQuantizer()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    logging.getLogger().addFilter(quantizer_notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().removeFilter(quantizer_notes)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _convert(
    model: Any, tokenizer: Any, outputs: Sequence[str], runtime: str, folder: Path, print_: str
) -> None:
    """Make ``folder`` (built aside, then moved in place) hold the conversion for ``runtime``,
    keeping the other runtime's conversion of the same weights when it is there."""
    building = folder.with_name(folder.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        started = time.perf_counter()
        kept = INT8_FILE if runtime == "onnx" else FP32_FILE
        if _read_source(folder).get("fingerprint") == print_:
            for file in folder.glob(kept + "*"):  # the graph, and its weights file if apart
                shutil.copyfile(file, building / file.name)
        apart = _weights_apart(model)
        exported, fused = building / "export.onnx", building / "fused.onnx"
        with _quiet_tools():
            export_fp32(model, tokenizer, outputs, exported)
            if runtime == "onnx":
                fuse_for_ort(exported, building / FP32_FILE, weights_apart=apart)
            else:
                fuse_for_ort(exported, fused, pack_qkv=False, weights_apart=apart)
                quantize_int8(fused, building / INT8_FILE)
        for file in [*building.glob("export.onnx*"), *building.glob("fused.onnx*")]:
            file.unlink()
        source = {"fingerprint": print_, "outputs": list(outputs)}
        (building / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
        _replace_folder(folder, building)
        log.info("converted for %s in %.1f s", runtime, time.perf_counter() - started)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


# ----------------------------------------------------------------- checking


def _check_inputs(tokenizer: Any, task: str) -> list[dict[str, torch.Tensor]]:
    batches = [
        tokenizer(list(_CHECK_TEXTS), padding=True, return_tensors="pt"),
        tokenizer([_CHECK_TEXTS[1]], return_tensors="pt"),
    ]
    if task == "qa":
        questions, contexts = zip(*_CHECK_PAIRS, strict=True)
        batches.append(
            tokenizer(list(questions), list(contexts), padding=True, return_tensors="pt")
        )
    return [dict(batch) for batch in batches]


def difference(
    reference: Any,
    candidate: Any,
    names: Sequence[str],
    tolerance: Tolerance,
    inputs: Any,
    *,
    per_token: bool = True,
) -> str | None:
    """Why ``candidate``'s outputs are not within ``tolerance`` of ``reference``'s (None when
    they are), comparing each row (over its real tokens, for ``per_token`` outputs)."""
    mask = inputs["attention_mask"].bool()
    for name in names:
        ref = getattr(reference, name).float()
        got = getattr(candidate, name).float()
        if ref.shape != got.shape:
            return f"{name} has shape {tuple(got.shape)}, not {tuple(ref.shape)}"
        for row in range(ref.shape[0]):
            a, b = ref[row], got[row]
            if per_token and a.dim() >= 1 and a.shape[0] == mask.shape[1]:
                a, b = a[mask[row]], b[mask[row]]
            a, b = a.flatten(), b.flatten()
            scale = max(1.0, float(a.abs().max()))
            gap = float((a - b).abs().max()) / scale
            cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
            if gap > tolerance.max_abs or cosine < tolerance.min_cosine:
                return f"{name} differs (max {gap:.2g} of its scale, cosine {cosine:.4f})"
    return None


def check(model: Any, encoder: OnnxEncoder, tokenizer: Any, spec: ModelSpec) -> str | None:
    """Why ``encoder`` must not replace ``model`` for ``spec`` (None: it may).

    What is compared is what a user receives of the outputs: the logits of each text or token,
    and for embeddings the sentence vectors, pooled as the model's own pooling says (the token
    states are internal; the vectors are what is stored and searched). Measured: int8 moves
    MiniLM's sentence vectors to a cosine of 0.96-0.97 with torch's on some SST-2 sentences,
    whichever single group of layers stays fp32, so that model's embeddings stay on torch."""
    pooling = model_pooling(model, spec).mode if spec.task == Task.EMBEDDING else None
    for inputs in _check_inputs(tokenizer, spec.task):
        feeds = {name: inputs[name] for name in encoder.inputs}
        with torch.inference_mode():
            reference = model(**feeds)
        candidate, names = encoder(**feeds), encoder.outputs
        if pooling is not None:
            mask = inputs["attention_mask"]
            reference = SimpleNamespace(vector=pool(reference.last_hidden_state, mask, pooling))
            candidate = SimpleNamespace(vector=pool(candidate.last_hidden_state, mask, pooling))
            names = ("vector",)
        problem = difference(
            reference,
            candidate,
            names,
            TOLERANCES[spec.runtime],
            inputs,
            per_token=pooling is None,
        )
        if problem is not None:
            return problem
    return None


# ----------------------------------------------------------------- the entry point


def prepare_runtime(spec: ModelSpec, model: Any, tokenizer: Any) -> Any:
    """The model to serve ``spec`` with: an :class:`OnnxEncoder` on the runtime it names, or
    ``model`` itself (torch), with a log line saying why, when that runtime cannot serve it."""
    if spec.runtime == "torch":
        return model
    try:
        return _onnx_encoder(spec, model, tokenizer)
    except RuntimeUnavailable as exc:
        log.warning("%s serves with torch, not %s: %s", spec.model_id, spec.runtime, exc)
    except Exception as exc:
        log.warning(
            "%s serves with torch: its conversion to %s failed (%s)",
            spec.model_id,
            spec.runtime,
            exc,
            exc_info=True,
        )
    return model


def _onnx_encoder(spec: ModelSpec, model: Any, tokenizer: Any) -> OnnxEncoder:
    if spec.device != "cpu":
        raise RuntimeUnavailable(f"ONNX Runtime runs on the CPU here, not {spec.device}")
    if spec.runtime_cache is None:
        raise RuntimeUnavailable("no folder is set to keep converted models in")
    outputs = task_info(spec.task).model_outputs
    folder = cache_folder(Path(spec.runtime_cache), spec)
    print_ = fingerprint(model)
    source = _read_source(folder)
    if source.get("fingerprint") == print_ and source.get("failed"):
        raise RuntimeUnavailable(f"its conversion failed before ({source['failed']})")
    file = INT8_FILE if spec.runtime == "onnx-int8" else FP32_FILE
    if source.get("fingerprint") != print_ or not (folder / file).is_file():
        if source and source.get("fingerprint") != print_:
            log.info("%s: its cached conversion is stale; converting again", spec.model_id)
        log.info("converting %s for %s (once)", spec.model_id, spec.runtime)
        try:
            _convert(model, tokenizer, outputs, spec.runtime, folder, print_)
        except Exception as exc:
            _remember_failure(folder, print_, exc)
            raise
    encoder = OnnxEncoder(
        folder / file,
        config=model.config,
        name_or_path=str(getattr(model, "name_or_path", "") or spec.model_id),
        inputs=model_inputs(model, tokenizer),
        outputs=outputs,
        threads=torch.get_num_threads(),
    )
    problem = check(model, encoder, tokenizer, spec)
    if problem is not None:
        raise RuntimeUnavailable(f"on the check inputs, {problem}")
    log.info("%s runs on %s", spec.model_id, spec.runtime)
    return encoder


def _remember_failure(folder: Path, print_: str, exc: Exception) -> None:
    """Record that these weights failed to convert, so later loads do not try again."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        source = {"fingerprint": print_, "failed": f"{type(exc).__name__}"}
        (folder / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
    except OSError:
        log.debug("could not record the failed conversion", exc_info=True)
