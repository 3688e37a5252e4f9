"""Shared allowance on the Prefect server: what one reservation + settlement costs.

Against the Prefect server that PREFECT_API_URL names, times `SharedBudget.acquire()` +
`settle()` through copydesk_flows.allowance (global concurrency limits), first one call
at a time, then N processes racing on one allowance; prints ms per call and checks
that the tokens granted never exceed the allowance.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python bench/shared_budget_bench.py [--calls 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
import uuid

from copydesk.allowance import Allowance, SharedBudget
from copydesk.errors import BudgetExhausted
from copydesk_flows.allowance import PrefectAllowanceStore


async def worker(name: str, limit: int, calls: int, concurrency: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    granted = 0
    timings: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with PrefectAllowanceStore() as store:
        budget = SharedBudget(Allowance(name=name, max_tokens=limit, period="day", timezone="UTC"), store)
        await budget.refresh()

        async def one() -> None:
            nonlocal granted
            async with gate:
                started = time.perf_counter()
                try:
                    reservation = await budget.acquire(400)
                except BudgetExhausted:
                    return
                cost = rng.randint(1, 400)
                granted += cost
                await budget.settle(reservation, cost)
                timings.append(time.perf_counter() - started)

        await asyncio.gather(*(one() for _ in range(calls)))
    timings.sort()
    return {"granted": granted, "calls": len(timings),
            "p50_ms": 1000 * timings[len(timings) // 2] if timings else 0.0,
            "mean_ms": 1000 * sum(timings) / len(timings) if timings else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, limit, calls, seed = args.worker
        print(json.dumps(asyncio.run(worker(name, int(limit), int(calls), 8, int(seed)))))
        return
    one = asyncio.run(worker(f"bench-{uuid.uuid4().hex[:6]}", 10**9, args.calls, 1, 0))
    print(f"one at a time: {one['calls']} reserve+settle, p50 {one['p50_ms']:.1f} ms, mean {one['mean_ms']:.1f} ms")
    name, limit = f"bench-{uuid.uuid4().hex[:6]}", 200 * args.calls * args.processes // 2
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", name, str(limit), str(args.calls), str(i)],
                              stdout=subprocess.PIPE, text=True) for i in range(args.processes)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    granted = sum(r["granted"] for r in results)
    print(f"{args.processes} processes x {args.calls} calls (8 at once each) on an allowance of {limit:,}: "
          f"granted {granted:,} ({granted / limit:.1%}), overshoot {max(granted - limit, 0)}, "
          f"p50 {sorted(r['p50_ms'] for r in results)[len(results) // 2]:.1f} ms")
    sys.exit(1 if granted > limit else 0)


if __name__ == "__main__":
    main()
