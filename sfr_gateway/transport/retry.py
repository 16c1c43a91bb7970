"""Backoff with jitter, Retry-After parsing, a bandwidth cap, and a throttled request body."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

RETRY_AFTER_MAX = 3600.0


class Retryable(Exception):
    """A failure worth trying again later (connection lost, 5xx, stall), with the server's hint
    and its cause (a key of ``transport.causes.CAUSES``)."""

    def __init__(self, message: str, retry_after: float | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.cause = cause


class RetryBudget:
    """Seconds one run may spend on failures: failed attempts and the waits between them,
    over every batch it sends (``[transport] retry_budget_seconds``). When it is spent the run
    stops retrying and leaves the batches pending: a cron run against a dead destination ends
    in about that long instead of minutes of backoff while it holds the HOME lock."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._clock = clock
        self._since: float | None = None

    def attempt(self) -> None:
        """An attempt starts now (its time counts only if it fails)."""
        self._since = self._clock()

    def failed(self) -> None:
        """The attempt begun by ``attempt`` failed: its time is spent."""
        if self._since is not None:
            self.spent += max(self._clock() - self._since, 0.0)
            self._since = None

    def allows(self, delay: float) -> bool:
        """May the run wait ``delay`` seconds and try again?"""
        return self.spent + delay <= self.seconds

    def waited(self, delay: float) -> None:
        self.spent += delay


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at an hour."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - now(), 0.0), RETRY_AFTER_MAX)


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None, rng: Callable[[], float]
) -> float:
    """Exponential backoff with "equal jitter": in [d/2, d] for d = min(cap, base * 2**(attempt-1)).

    A server's Retry-After is a floor: we never come back sooner than it asked.
    """
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    delay = ceiling / 2 + rng() * ceiling / 2
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class Throttle:
    """Leaky bucket: ``consume(n)`` sleeps so the long-run rate stays under ``rate`` bytes/s."""

    def __init__(
        self,
        rate: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0

    def consume(self, n: int) -> None:
        if self.rate <= 0 or n <= 0:
            return
        now = self._clock()
        start = max(self._next, now)
        self._next = start + n / self.rate
        wait = start - now
        if wait > 0:
            self._sleep(wait)


class ThrottledBody:
    """A request body over ``data`` read in small pieces, each paced by ``throttle``.

    requests sends objects with ``read`` and ``__len__`` as a fixed-length streamed body,
    so the cap applies while bytes leave, not before.
    """

    PIECE = 64 * 1024

    def __init__(self, data: bytes, throttle: Throttle, on_sent: Callable[[int], None] | None = None) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._throttle = throttle
        self._on_sent = on_sent

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        step = self.PIECE if size is None or size < 0 else min(size, self.PIECE)
        piece = self._view[self._pos : self._pos + step].tobytes()
        self._pos += len(piece)
        if piece:
            self._throttle.consume(len(piece))
            if self._on_sent is not None:
                self._on_sent(len(piece))
        return piece
