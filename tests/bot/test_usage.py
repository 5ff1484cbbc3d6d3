"""The per-user budget across model requests, and the cap on requests in flight."""

from __future__ import annotations

import pytest

from bot.usage import UsageLimiter, UsageLimits, UsageRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    budget: int = 3, window_s: float = 30.0, in_flight: int = 2
) -> tuple[UsageLimiter, Clock]:
    clock = Clock()
    return UsageLimiter(UsageLimits(budget, window_s, in_flight), clock=clock), clock


def test_one_budget_per_user_over_a_sliding_window() -> None:
    usage, clock = limiter(budget=3, window_s=30.0)
    for _ in range(3):
        usage.admit(1).release()
        clock.now += 5
    assert usage.remaining(1) == 0
    with pytest.raises(UsageRefused) as refused:
        usage.admit(1)
    # The first request was 15 s ago: its place frees in 15 s.
    assert refused.value.retry_after_s == pytest.approx(15.0)
    assert "3 model requests every 30 s" in str(refused.value)
    assert "Try again in 15 s" in str(refused.value)
    usage.admit(2).release()  # another user has a budget of their own
    clock.now += 15
    usage.admit(1).release()  # the oldest request left the window
    with pytest.raises(UsageRefused):
        usage.admit(1)


def test_a_refusal_costs_nothing() -> None:
    usage, clock = limiter(budget=1, window_s=10.0)
    usage.admit(1).release()
    for _ in range(5):
        clock.now += 1
        with pytest.raises(UsageRefused):
            usage.admit(1)
    clock.now += 5.5  # 10.5 s after the only admitted request
    usage.admit(1).release()


def test_requests_in_flight_are_capped_until_they_end() -> None:
    usage, _ = limiter(budget=0, in_flight=2)  # no budget: only the in-flight cap
    first = usage.admit(1)
    with usage.hold(1):
        assert usage.in_flight(1) == 2
        with pytest.raises(UsageRefused, match="already have 2 model requests running"):
            usage.admit(1)
        usage.admit(2).release()  # per user
    assert usage.in_flight(1) == 1
    with pytest.raises(RuntimeError), usage.hold(1):
        raise RuntimeError("the work failed")
    assert usage.in_flight(1) == 1  # released however the block ended
    first.release()
    first.release()  # a second release is a no-op
    assert usage.in_flight(1) == 0
    assert usage.remaining(1) is None


def test_one_request_in_flight_is_said_plainly() -> None:
    usage, _ = limiter(in_flight=1)
    with usage.hold(1), pytest.raises(UsageRefused) as refused:
        usage.admit(1)
    assert str(refused.value) == (
        "You already have a model request running; wait for it to finish, then try again."
    )


def test_users_with_nothing_in_the_window_are_forgotten() -> None:
    usage, clock = limiter(budget=5, window_s=10.0)
    for user in range(600):
        usage.admit(user).release()
    clock.now += 11
    usage.admit(10_000).release()  # expired users go on release and in periodic sweeps
    for user in range(600, 1100):
        usage.admit(user).release()
    assert usage.tracked_users < 600


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        UsageLimits(budget=-1, window_s=1.0, max_in_flight=1)
    with pytest.raises(ValueError):
        UsageLimits(budget=1, window_s=0.0, max_in_flight=1)
    with pytest.raises(ValueError):
        UsageLimits(budget=1, window_s=1.0, max_in_flight=0)
