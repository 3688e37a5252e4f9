"""The hand-written baseline: asyncio + httpx, the same calls with the same dependencies.

For each topic: title → outline → one call per outline line (concurrently) → the
shipped spec's two extra stages (description, tags), all under one semaphore of the same concurrency. No Prefect, no QC, no export
beyond one Markdown file per article. This is what copydesk's own cost is
measured against. With --moderate, each article's text also goes to the API's
moderation endpoint in one request (as copydesk's `provider: auto` does with a key).

    python bench/baseline.py [--moderate] BASE_URL CONCURRENCY OUT_DIR TOPIC...
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx


async def main(base_url: str, concurrency: int, out: Path, topics: list[str], moderate: bool = False) -> None:
    sem = asyncio.Semaphore(concurrency)
    out.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=base_url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def chat(prompt: str, **params: object) -> str:
            async with sem:
                r = await client.post("/chat/completions", json={
                    "model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], **params})
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"]

        async def article(i: int, topic: str) -> None:
            title = await chat(f"Write one short title for a blog post about: {topic}", max_tokens=24)
            outline = await chat(f'Plan a blog post titled "{title}" about {topic}. Give an outline.', max_tokens=200)
            headings = [line.split(".", 1)[-1].strip() for line in outline.splitlines() if line.strip()]
            bodies = await asyncio.gather(*(
                chat(f'You are writing "{title}". Write the section {n}/{len(headings)}: "{h}".', max_tokens=400)
                for n, h in enumerate(headings, 1)))
            text = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in zip(headings, bodies))
            # the shipped spec's extra stages (stages.extras), one after the other as copydesk asks them
            await chat(f'Here is a blog post titled "{title}".\n\n{text[:800]}\n\nWrite one short sentence '
                       "that says what this blog post is about.", max_tokens=60)
            await chat(f"Give three keywords for a blog post about {topic}, separated by commas.", max_tokens=30)
            if moderate:
                r = await client.post("/moderations", json={"model": "omni-moderation-latest", "input": [text]})
                r.raise_for_status()
            (out / f"article-{i}.md").write_text(text, encoding="utf-8")

        await asyncio.gather(*(article(i, t) for i, t in enumerate(topics)))


if __name__ == "__main__":
    argv = sys.argv[1:]
    moderate = argv[:1] == ["--moderate"]
    argv = argv[1:] if moderate else argv
    asyncio.run(main(argv[0].rstrip("/"), int(argv[1]), Path(argv[2]), argv[3:], moderate))
