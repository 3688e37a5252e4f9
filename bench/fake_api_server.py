"""Run the fake OpenAI-compatible server in its own process, with realistic latency.

Latency = --latency + --per-token × completion tokens, like a real API. Prints
its base URL on the first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import sys
import time
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


def make_reply(section_words: int):
    """Answers by stage: the bench's own prompts by their words, any other spec's (the default
    one) by the call's max_tokens (title < 50 <= outline < 300 <= section)."""
    words = SECTION.split()
    section = " ".join((words * (section_words // len(words) + 1))[:section_words])
    if not section.endswith("."):
        section += "."

    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"].lower()
        if "write the section" in prompt:
            return section
        if "give an outline" in prompt:
            return OUTLINE
        if "write one short title" in prompt:
            return TITLE
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 400)
        return TITLE if limit < 50 else OUTLINE if limit < 300 else section

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
