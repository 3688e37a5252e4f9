"""Run the fake OpenAI-compatible server in its own process, with realistic latency.

Latency = --latency + --per-token × completion tokens, like a real API. Prints
its base URL on the first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

# About 300 words: a realistic section for max_tokens 400.
SECTION = " ".join([(
    "A good habit starts small and grows with practice over many weeks. "
    "Teams that measure before they change anything avoid most surprises later on. "
    "Write the number down, compare it with the last one, and share what you learned with the rest. "
    "When something breaks, read the error message slowly, then find the smallest example that shows it. "
    "Fix that, add a test, and move on to the next problem on the list without hurry."
)] * 4)


OUTLINE = "1. Why it matters\n2. How it works\n3. A worked example\n4. Common mistakes\n5. Next steps"
TITLE = "A Practical Guide for Busy Developers"


_SUBJECTS = ["The team", "Our editor", "A new writer", "The build server", "Every reviewer", "The pipeline",
             "A careful tester", "The on-call engineer", "Each service", "The release manager"]
_VERBS = ["checks", "drafts", "measures", "reviews", "rewrites", "shortens", "explains", "documents",
          "profiles", "simplifies"]
_OBJECTS = ["the outline before lunch", "a short note about caching", "every heading in the draft",
            "the budget report for {n} topics", "an example that uses {n} requests", "the section on rate limits",
            "a paragraph that was too long", "the summary for the weekly newsletter", "the slow query from {n} users",
            "the error message in the log"]
_TAILS = ["", " because the deadline is close", " and then shares the result", " so that nobody has to wait",
          " while the cache is still warm", " before the next release goes out"]


def _prose(seed: str, words: int) -> str:
    """`words` words of plain, grammatical English, different for every seed (each section of
    each article), so no check sees repeated sections or near-duplicate articles."""
    rng = random.Random(zlib.crc32(seed.encode("utf-8")))
    out: list[str] = []
    while len(out) < words:
        obj = rng.choice(_OBJECTS).format(n=rng.randint(2, 9000))
        out += f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {obj}{rng.choice(_TAILS)}.".split()
    text = " ".join(out[:words])
    return text if text.endswith(".") else text.rstrip(",;") + "."


def make_reply(section_words: int):
    """Answers by stage: the bench's own prompts by their words, any other spec's (the default
    one) by the call's max_tokens (title < 50 <= outline < 300 <= section). Sections are
    varied prose seeded by the prompt."""

    def reply(body: dict) -> str:
        content = body["messages"][-1]["content"]
        prompt = content.lower()
        if "write the section" in prompt:
            return _prose(content, section_words)
        if "give an outline" in prompt:
            return OUTLINE
        if "write one short title" in prompt:
            return TITLE
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 400)
        return TITLE if limit < 50 else OUTLINE if limit < 300 else _prose(content, section_words)

    return reply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--per-token", type=float, default=0.01)
    parser.add_argument("--section-words", type=int, default=len(SECTION.split()),
                        help="words (= completion tokens) of a section; default ~300 (3.2 s at the defaults)")
    args = parser.parse_args()
    fake = FakeOpenAI(reply=make_reply(args.section_words), latency=args.latency, per_token_latency=args.per_token).start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
