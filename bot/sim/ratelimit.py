"""Per-route rate-limit buckets with Discord's headers, and forced 429s for tests."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RateLimitPolicy:
    """How many requests a bucket allows per window (generous by default, so tests stay fast)."""

    limit: int = 50
    window_s: float = 1.0


@dataclass
class ForcedLimit:
    route: str  # "POST /channels/{channel_id}/messages"
    retry_after: float
    times: int
    is_global: bool


class RateLimited(Exception):
    def __init__(self, headers: dict[str, str], body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.headers = headers
        self.body = body


class RateLimiter:
    def __init__(self, policy: RateLimitPolicy) -> None:
        self.policy = policy
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._forced: list[ForcedLimit] = []
        self.hits = 0

    def force(self, route: str, *, retry_after: float, times: int, is_global: bool) -> None:
        self._forced.append(ForcedLimit(route, retry_after, times, is_global))

    def check(self, route: str, major: str) -> dict[str, str]:
        """Count a request; return headers, or raise RateLimited with Discord's 429 answer."""
        bucket = hashlib.sha1(route.encode()).hexdigest()[:16]
        for forced in self._forced:
            if forced.route == route and forced.times > 0:
                forced.times -= 1
                self.hits += 1
                raise self._limited(bucket, forced.retry_after, forced.is_global)
        now = time.time()
        start, count = self._windows.get((bucket, major), (now, 0))
        if now - start >= self.policy.window_s:
            start, count = now, 0
        reset_after = max(0.0, self.policy.window_s - (now - start))
        if count >= self.policy.limit:
            self.hits += 1
            raise self._limited(bucket, reset_after, False)
        count += 1
        self._windows[(bucket, major)] = (start, count)
        return {
            "X-RateLimit-Limit": str(self.policy.limit),
            "X-RateLimit-Remaining": str(self.policy.limit - count),
            "X-RateLimit-Reset": f"{start + self.policy.window_s:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def _limited(self, bucket: str, retry_after: float, is_global: bool) -> RateLimited:
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Limit": str(self.policy.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if is_global else "user",
            # discord.py treats a 429 without Via as a Cloudflare ban, as Discord's edge adds it.
            "Via": "1.1 google",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        return RateLimited(headers, body)
