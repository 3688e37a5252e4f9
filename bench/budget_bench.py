"""Budget guard under load: 1,000 calls at concurrency 64 with randomised usage.

Runs copydesk's CallGateway (the real client over loopback HTTP, the budget,
the adaptive limiter) against the fake OpenAI-compatible server, which bills a
random completion length between 1 and max_tokens for every call. Prints the
API's own token count against the budget: the overshoot must be 0; the share of
the budget used before the stop shows how much the reservation bound costs.

    .venv/bin/python bench/budget_bench.py [--calls 1000] [--concurrency 64] [--budget 150000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

from copydesk.budget import TokenBudget  # noqa: E402
from copydesk.calls import CallGateway, RetryPolicy  # noqa: E402
from copydesk.client import ApiEndpoint, ChatClient, ChatRequest  # noqa: E402
from copydesk.errors import BudgetExhausted  # noqa: E402
from copydesk.limiter import AdaptiveLimiter  # noqa: E402


async def one_round(calls: int, concurrency: int, budget_limit: int, seed: int) -> dict[str, float]:
    with FakeOpenAI(randomize_usage=True, seed=seed, latency=0.002) as fake:
        budget = TokenBudget(budget_limit)
        async with ChatClient(ApiEndpoint(fake.url), max_connections=concurrency) as client:
            gateway = CallGateway(client, budget, AdaptiveLimiter(concurrency), retry=RetryPolicy(initial=0.01))
            done = refused = 0

            async def call(i: int) -> None:
                nonlocal done, refused
                request = ChatRequest(
                    model="gpt-4o-mini",
                    messages=({"role": "user", "content": f"Write paragraph {i} about budgets."},),
                    params={"max_tokens": 400, "temperature": 0.7},
                )
                try:
                    await gateway.complete("expansion", request, key=f"call-{i}")
                    done += 1
                except BudgetExhausted:
                    refused += 1

            started = time.perf_counter()
            await asyncio.gather(*(call(i) for i in range(calls)))
            seconds = time.perf_counter() - started
        return {
            "api_tokens": fake.total_tokens,
            "copydesk_spent": budget.spent,
            "overshoot": max(0, fake.total_tokens - budget_limit),
            "share_used": fake.total_tokens / budget_limit,
            "calls_done": done,
            "calls_refused": refused,
            "peak_in_flight": fake.state.peak_in_flight,
            "seconds": seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--budget", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.calls} calls, concurrency {args.concurrency}, budget {args.budget:,}, max_tokens 400, "
          f"usage uniform in 1..400")
    print(f"{'round':>5} {'API tokens':>11} {'overshoot':>9} {'share used':>10} {'done':>5} {'refused':>7} "
          f"{'peak':>4} {'s':>6}")
    worst = 0
    for seed in range(args.rounds):
        r = asyncio.run(one_round(args.calls, args.concurrency, args.budget, seed))
        worst = max(worst, r["overshoot"])
        if r["api_tokens"] != r["copydesk_spent"]:
            print(f"  note: copydesk counted {r['copydesk_spent']:,}, the API billed {r['api_tokens']:,}")
        print(f"{seed:>5} {r['api_tokens']:>11,} {r['overshoot']:>9} {r['share_used']:>10.3f} {r['calls_done']:>5} "
              f"{r['calls_refused']:>7} {r['peak_in_flight']:>4} {r['seconds']:>6.2f}")
    print(f"overshoot over all rounds: {worst} tokens")
    sys.exit(1 if worst else 0)


if __name__ == "__main__":
    main()
