"""Why models load on a thread that ends with the load (``models.executor.CallThreads``).

Usage::

    python bench/threads.py --json            # torch threads: the CPUs, at least 2

A thread that ran torch keeps its OpenMP thread team for as long as it lives. With two teams
alive, a process has more OpenMP threads than CPUs, and libgomp then puts idle threads to sleep
at once instead of letting them spin a moment, so every small op pays a wake-up. This measures,
in one process and one run, the same loop of small ops (a 32-row matmul and GELU, what a
generation step or a small encoder batch is made of) on the calling thread:

- ``alone_ms``: only the calling thread has run torch (the baseline);
- ``after_ended_thread_ms``: another thread ran one parallel op and ended (what ``CallThreads``
  does for each load);
- ``beside_live_thread_ms``: another thread ran one parallel op and is still alive (what a lasting
  loader thread did);

and ``live_over_alone``, the slowdown the lasting thread costs.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def small_ops(rounds: int) -> float:
    """Milliseconds for ``rounds`` small matmul + GELU steps on this thread (best of 3)."""
    import torch

    weight, rows = torch.randn(384, 384), torch.randn(32, 384)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(rounds):
                torch.nn.functional.gelu(rows @ weight)
            best = min(best, time.perf_counter() - started)
    return best * 1000


def parallel_op() -> None:
    """One op big enough that torch runs it on its OpenMP team."""
    import torch

    with torch.inference_mode():
        torch.randn(1500, 1500) @ torch.randn(1500, 1500)


def measure(threads: int, rounds: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    small_ops(rounds // 10)  # warm-up
    result: dict[str, Any] = {
        "torch_threads": threads,
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "loadavg_1m_at_start": os.getloadavg()[0],
        "alone_ms": small_ops(rounds),
    }
    ended = threading.Thread(target=parallel_op)
    ended.start()
    ended.join()
    result["after_ended_thread_ms"] = small_ops(rounds)
    lasting = ThreadPoolExecutor(max_workers=1)
    try:
        lasting.submit(parallel_op).result()
        result["beside_live_thread_ms"] = small_ops(rounds)
    finally:
        lasting.shutdown()
    result["ended_over_alone"] = result["after_ended_thread_ms"] / result["alone_ms"]
    result["live_over_alone"] = result["beside_live_thread_ms"] / result["alone_ms"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, help="torch threads (default: CPUs, at least 2)")
    parser.add_argument("--rounds", type=int, default=10_000, help="small ops per measurement")
    args = parser.parse_args(argv)
    threads = args.threads or max(2, os.cpu_count() or 2)
    result = measure(threads, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value:.2f}" if isinstance(value, float) else f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
