"""How long to wait before trying a call again: `RetryPolicy` (exponential backoff with jitter)
and the server's own answer (`Retry-After`, `retry-after-ms`, `x-ratelimit-reset-*`)."""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call (the first included) and the backoff between them."""

    max_attempts: int = 8
    initial: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): the server's own
        `retry_after` when it gave one, else `initial` doubling per attempt; plus up to
        `jitter`; at most `max_delay` (but at least 1 s when the server asked)."""
        spread = random.uniform(0, self.jitter) if self.jitter > 0 else 0.0
        if retry_after is not None:
            return min(max(retry_after, 0.0) + spread, max(self.max_delay, 1.0))
        return max(0.0, min(self.initial * 2 ** (attempt - 1) + spread, self.max_delay))


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def retry_after_seconds(headers: httpx.Headers | dict[str, str], now: float | None = None) -> float | None:
    """How long the server asked us to wait: `Retry-After` (seconds or an HTTP date),
    `retry-after-ms`, or OpenAI's `x-ratelimit-reset-requests/-tokens` ("1s", "6m0s", "20ms")."""
    headers = httpx.Headers(headers)
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - (now if now is not None else time.time()))
            except (TypeError, ValueError, IndexError):
                pass
    resets = [
        parsed
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (raw := headers.get(name)) and (parsed := parse_duration(raw)) is not None
    ]
    return max(resets) if resets else None


def parse_duration(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000
