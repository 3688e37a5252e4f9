"""Tokens per second of the embedded local model, called directly and through copydesk.

    .venv/bin/python bench/local_model_bench.py [--max-tokens 128] [--repeat 2]

Starts llama.cpp's server with SmolLM2 through `copydesk.services.llama.LlamaServer`
(or reuses one left by `copydesk services start`), then sends the same prompts,
one at a time:

- direct: a bare `httpx` POST to /v1/chat/completions (the baseline);
- copydesk: the same requests through copydesk's client (`copydesk_client_samples`,
  below; reported as "not measured" until that function is filled in).

tokens/s = completion_tokens / wall-clock seconds of the request, summed over
all requests (so long answers weigh more than short ones). The server runs one
request at a time, so concurrency would only queue; it is not measured here.
Prints one table and the ratio copydesk / direct.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx  # noqa: E402

from copydesk.services.llama import LlamaServer  # noqa: E402
from copydesk.services.process import find_running  # noqa: E402
from copydesk.settings import Settings  # noqa: E402

PROMPTS = [
    "Write a short blog title about caching in web applications.",
    "Explain in a paragraph why small language models are useful on laptops.",
    "List five tips for writing clear technical documentation.",
    "Write an introduction for an article about rate limits in APIs.",
    "Describe how a content team could review articles before publishing.",
]


@dataclass(frozen=True)
class Sample:
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def request_body(model: str, prompt: str, max_tokens: int, seed: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
    }


async def direct_samples(base_url: str, model: str, prompts: list[str], max_tokens: int) -> list[Sample]:
    """The baseline: one bare httpx POST per prompt, sequentially."""
    samples = []
    async with httpx.AsyncClient(base_url=base_url, timeout=300, trust_env=False) as client:
        for i, prompt in enumerate(prompts):
            started = time.perf_counter()
            response = await client.post("/chat/completions", json=request_body(model, prompt, max_tokens, seed=i))
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            usage = response.json()["usage"]
            samples.append(Sample(usage["prompt_tokens"], usage["completion_tokens"], elapsed))
    return samples


async def copydesk_client_samples(base_url: str, model: str, prompts: list[str], max_tokens: int) -> list[Sample]:
    """The same requests through copydesk's call path: the gateway (budget, limiter,
    retries, call store) over `copydesk.client.ChatClient`, one at a time."""
    from copydesk.budget import TokenBudget
    from copydesk.calls import CallGateway
    from copydesk.client import ApiEndpoint, ChatClient, ChatRequest
    from copydesk.limiter import AdaptiveLimiter

    samples = []
    async with ChatClient(ApiEndpoint(base_url), timeout=300) as client:
        gateway = CallGateway(client, TokenBudget(10**9), AdaptiveLimiter(1))
        for i, prompt in enumerate(prompts):
            body = request_body(model, prompt, max_tokens, seed=i)
            request = ChatRequest(model=model, messages=tuple(body["messages"]),
                                  params={k: v for k, v in body.items() if k not in ("model", "messages")})
            started = time.perf_counter()
            result = await gateway.complete("expansion", request, key=f"bench-{i}")
            elapsed = time.perf_counter() - started
            usage = result.completion.usage
            samples.append(Sample(usage.prompt_tokens, usage.completion_tokens, elapsed))
    return samples


def tokens_per_second(samples: list[Sample]) -> float:
    return sum(s.completion_tokens for s in samples) / sum(s.seconds for s in samples)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="llama-bench-") as tmp:
        settings = Settings()
        running = find_running("llama", settings.state_dir)
        server: LlamaServer | None = None
        start_s: float | None = None
        if running is not None:
            base_url = running.url
        else:
            server = LlamaServer(Settings(state_dir=Path(tmp)))
            started = time.perf_counter()
            server.start()
            start_s = time.perf_counter() - started
            base_url = server.url
        try:
            model = settings.llama_model_alias
            prompts = PROMPTS * args.repeat
            await direct_samples(base_url, model, PROMPTS[:1], 16)  # warm-up, untimed
            direct = await direct_samples(base_url, model, prompts, args.max_tokens)
            try:
                ours: list[Sample] | None = await copydesk_client_samples(base_url, model, prompts, args.max_tokens)
            except NotImplementedError:
                ours = None
        finally:
            if server is not None:
                server.stop()

    print(f"local model {settings.llama_model_alias} at {base_url}, {settings.llama_threads} threads, "
          f"max_tokens {args.max_tokens}, {len(prompts)} requests, one at a time")
    if start_s is not None:
        print(f"server start (spawn to /v1/models answering): {start_s:.2f} s")
    else:
        print("server: reused a running background service")
    header = f"{'path':<9} {'requests':>8} {'prompt tok':>10} {'compl tok':>9} {'wall s':>7} {'ms/request':>10} {'tokens/s':>8}"
    print(header)
    print("-" * len(header))
    rows = [("direct", direct), ("copydesk", ours)]
    for name, samples in rows:
        if samples is None:
            print(f"{name:<9} {'not measured (fill in copydesk_client_samples)':>58}")
            continue
        print(
            f"{name:<9} {len(samples):>8} {sum(s.prompt_tokens for s in samples):>10} "
            f"{sum(s.completion_tokens for s in samples):>9} {sum(s.seconds for s in samples):>7.2f} "
            f"{statistics.mean(s.seconds for s in samples) * 1000:>10.0f} {tokens_per_second(samples):>8.1f}"
        )
    if ours is not None:
        print(f"ratio copydesk / direct (tokens/s): {tokens_per_second(ours) / tokens_per_second(direct):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2, help="times each prompt is sent")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
