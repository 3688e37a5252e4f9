"""Waiting calls: what N calls queued behind a window of 32 cost, per waiter.

Three layers, each with N = 1k, 2k, 4k, 8k (or --sizes):

- `limiter`: N tasks through `AdaptiveLimiter(32).slot()` (the concurrency window alone);
- `gateway`: N calls through `CallGateway.complete()` (rate limiter, window, budget,
  retries, call store, events) against an in-process client that answers at once;
- `articles`: N articles through `orchestration.process_articles` (the article queue:
  2 x concurrency workers), each making one call through the same gateway.

A fair O(1)-per-release queue costs the same per waiter at every N, so the ratio of the
total against 1k stays near N/1k (2, 4, 8); a queue that wakes every waiter on every
release (what `asyncio.Condition.notify_all` did before) grows as N^2 (4, 16, 64).
Each size is measured `--repeat` times and the best is kept (the machine is shared).

    python bench/limiter_bench.py [--sizes 1000 2000 4000 8000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from copydesk.budget import TokenBudget  # noqa: E402
from copydesk.calls import CallGateway  # noqa: E402
from copydesk.client import ChatRequest, Completion, RetryPolicy, Usage  # noqa: E402
from copydesk.limiter import AdaptiveLimiter, RateLimiter  # noqa: E402

WINDOW = 32
REQUEST = ChatRequest("bench", ({"role": "user", "content": "hello"},), {"max_tokens": 8})


class _InstantClient:
    """Answers every call after one turn of the event loop."""

    async def complete(self, request: ChatRequest) -> Completion:
        await asyncio.sleep(0)
        return Completion("ok", "stop", Usage(4, 4, 8), request.model)


def _gateway() -> CallGateway:
    return CallGateway(
        _InstantClient(),  # type: ignore[arg-type]
        TokenBudget(10**12),
        AdaptiveLimiter(WINDOW),
        rate_limiter=RateLimiter(),
        retry=RetryPolicy(max_attempts=1),
    )


async def limiter_only(n: int) -> float:
    lim = AdaptiveLimiter(WINDOW)

    async def one() -> None:
        async with lim.slot():
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    assert lim.in_flight == 0 and lim.handoffs == n - WINDOW
    return time.perf_counter() - started


async def gateway(n: int) -> float:
    gw = _gateway()
    started = time.perf_counter()
    await asyncio.gather(*(gw.complete("bench", REQUEST, str(i)) for i in range(n)))
    assert gw.stats.calls == n
    return time.perf_counter() - started


async def articles(n: int) -> float:
    from types import SimpleNamespace

    from copydesk.orchestration import ARTICLES_PER_CALL_SLOT, RunHooks, process_articles

    gw = _gateway()
    run = SimpleNamespace(articles=[SimpleNamespace(index=i) for i in range(n)], resources=SimpleNamespace(gateway=gw))
    done: list[int] = []

    class Hooks(RunHooks[None]):
        async def article(self, run: object, article: SimpleNamespace) -> None:  # type: ignore[override]
            await gw.complete("bench", REQUEST, str(article.index))
            done.append(article.index)

    started = time.perf_counter()
    await process_articles(run, Hooks(), ARTICLES_PER_CALL_SLOT * WINDOW)  # type: ignore[arg-type]
    assert sorted(done) == list(range(n))
    return time.perf_counter() - started


LAYERS = {"limiter": limiter_only, "gateway": gateway, "articles": articles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", nargs="+", choices=sorted(LAYERS), default=list(LAYERS))
    args = parser.parse_args()
    print(f"{'layer':<9} {'waiters':>8} {'total s':>8} {'us/waiter':>10} {'x vs first':>10} {'N ratio':>8}")
    for name in args.layers:
        first: float | None = None
        for n in args.sizes:
            best = float("inf")
            for _ in range(args.repeat):
                gc.collect()
                best = min(best, asyncio.run(LAYERS[name](n)))
            first = first or best
            print(f"{name:<9} {n:>8} {best:>8.3f} {best / n * 1e6:>10.1f} "
                  f"{best / first:>10.2f} {n / args.sizes[0]:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
