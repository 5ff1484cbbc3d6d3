"""Remote inference engines: where one is, how patiently to talk to it, how it is doing.

A model spec with an :class:`Engine` is served by a runner that talks to a server (vLLM, Text
Generation Inference, llama.cpp's server, Ollama, ``transformers serve``...) instead of a model
loaded in this process. The engine's API key is kept out of ``repr`` and comparisons, so it never
reaches a log line or a status; users see the engine by its :attr:`Engine.host` only.

:class:`CircuitBreaker` turns repeated failures into a short pause during which requests are
refused at once with a sentence, instead of every user waiting on a dead engine; the runner
reports how the engine is doing as an :class:`EngineHealth` (shown by ``/models``).

Importing this module does not import torch or the HTTP client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

# The APIs a remote runner exists for ("local" is the in-process backend, not an engine).
ENGINE_KINDS = ("openai",)
BACKENDS = ("local", *ENGINE_KINDS)

HealthState = Literal["unknown", "answering", "failing", "paused"]


@dataclass(frozen=True)
class Engine:
    """A server the bot sends requests to, and the limits of its patience.

    ``connect_timeout_s`` bounds opening a connection; ``read_timeout_s`` the silence accepted
    while waiting for the response and between streamed pieces. Before the first piece a
    request is tried at most ``max_attempts`` times on a connection failure, a timeout, a 429 or
    a 5xx, waiting ``backoff_s`` then twice that... (or the server's Retry-After), but no attempt
    starts once ``retry_budget_s`` have passed. ``breaker_failures`` failed attempts in a row
    open the circuit for ``breaker_pause_s``: requests are then refused at once.
    """

    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False, compare=False)
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3
    backoff_s: float = 0.25
    retry_budget_s: float = 5.0
    breaker_failures: int = 3
    breaker_pause_s: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ENGINE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ENGINE_KINDS)}, got {self.kind!r}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        for name in ("connect_timeout_s", "read_timeout_s", "breaker_pause_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_s < 0 or self.retry_budget_s < 0:
            raise ValueError("backoff_s and retry_budget_s must not be negative")
        if self.max_attempts < 1 or self.breaker_failures < 1:
            raise ValueError("max_attempts and breaker_failures must be at least 1")

    @property
    def host(self) -> str:
        """``host[:port]`` of the server, without any credentials in the URL: what users see."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        if ":" in host:  # IPv6
            host = f"[{host}]"
        return f"{host}:{parts.port}" if parts.port else host


@dataclass(frozen=True)
class EngineHealth:
    """How an engine is doing, as its runner last saw it.

    ``state``: ``unknown`` before any request or probe, ``answering`` after a success,
    ``failing`` after a failure (``detail`` is the sentence users got), ``paused`` while the
    circuit breaker refuses requests (for ``retry_in_s`` more seconds). ``first_token_ms`` is
    the last request's time to its first piece (or the last probe's round trip).
    """

    backend: str
    host: str
    state: HealthState
    detail: str | None = None
    retry_in_s: float | None = None
    first_token_ms: float | None = None


@dataclass(frozen=True)
class EngineProbe:
    """What asking an engine for its model list found: the ``models`` it lists (None when it did
    not answer) and, when something is wrong, ``problem`` (a line for the operator, with
    details; users get sentences from :class:`EngineHealth` instead)."""

    backend: str
    host: str
    model: str
    models: tuple[str, ...] | None
    problem: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.problem is None


class CircuitBreaker:
    """Opens after ``failures`` failures in a row; while open, :meth:`retry_in` says how long.

    After the pause one request may try again; a success closes the circuit, a failure opens it
    again at once (the count stays at the threshold until a success).
    """

    def __init__(
        self, failures: int, pause_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.pause_s = pause_s
        self._clock = clock
        self.failures = 0
        self._open_until = 0.0

    def retry_in(self) -> float | None:
        """Seconds until requests are let through again; None when they are now."""
        left = self._open_until - self._clock()
        return left if left > 0 else None

    def record_success(self) -> None:
        self.failures = 0
        self._open_until = 0.0

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self._open_until = self._clock() + self.pause_s


def whole_seconds(seconds: float) -> int:
    """A wait as users read it: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
