"""JIT warm-up of a kept LanguageTool server, in the background right after it starts.

A server kept between runs (`copydesk services start`, or started by `copydesk run` with
COPYDESK_KEEP_SERVERS, the default) runs with the JVM's full tiered JIT: once its hot
code is compiled by C2 it checks a word for about half the CPU of the C1-only JIT that a
one-run server uses (bench/README.md, issue 14). Getting there costs CPU once: ~50,000
words of checks. This process pays it right after the start, with generated English
prose, instead of the user's first big run:

    python -m copydesk.services.warmup http://127.0.0.1:PORT [--words 60000] [--seconds 150]

It sends one ~1,500-word check at a time, so one of the server's two check threads stays
free, and it yields to real work: when a check takes more than twice the fastest one so
far (a run is using the server or the machine), it waits 5 s before the next. It stops
at the word count, at the time limit, or when the server goes away. It logs one line per
check (the server's log folder, `languagetool-warmup.log`).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import TextIO

import httpx

#: Checked in all; about where C2 has compiled LanguageTool's hot code (measured: the check
#: time falls for the first ~15 checks of 3,400 words, then stays flat).
DEFAULT_WORDS = 60_000
DEFAULT_SECONDS = 150.0
CHUNK_WORDS = 1_500
#: A check this many times slower than the fastest means the server or the machine is busy.
BUSY_FACTOR = 2.0
BUSY_PAUSE = 5.0

_SUBJECTS = (
    "The team", "Our build server", "A new engineer", "The release manager", "Every reviewer",
    "The on-call developer", "This library", "The test suite", "A careful writer", "The scheduler",
    "Each service", "The database", "Your editor", "The pipeline", "Nobody on the team",
)
_VERBS = (
    "checks", "rewrites", "measures", "explains", "documents", "reviews", "simplifies", "deploys",
    "profiles", "compares", "caches", "retries", "summarizes", "validates", "refactors",
)
_OBJECTS = (
    "the error message in the log", "a paragraph that was too long", "the budget report",
    "every heading in the draft", "the slow query", "the flaky test", "the outline before lunch",
    "the section on rate limits", "its own assumptions", "the numbers in the table",
    "a function nobody calls", "the configuration file", "the first draft of the guide",
)
_TAILS = (
    "before the next release goes out", "because the deadline is close", "while the cache is still warm",
    "so that nobody has to wait", "and then shares the result", "after the meeting on Monday",
    "although it took longer than planned", "which saved us an hour", "if the numbers look wrong",
    "when the queue is empty", "until the warnings disappear", "as the style guide suggests",
)
_OPENERS = (
    "", "", "", "In practice, ", "However, ", "For example, ", "Later that week, ", "As a rule, ",
    "Fortunately, ", "On most days, ", "Without a second thought, ",
)


def prose(seed: int, words: int) -> str:
    """Varied, plain English sentences, about `words` words, paragraphs of five sentences."""
    rng = random.Random(seed)
    sentences: list[str] = []
    count = 0
    while count < words:
        opener, subject = rng.choice(_OPENERS), rng.choice(_SUBJECTS)
        if opener:
            subject = subject[0].lower() + subject[1:]
        sentence = f"{opener}{subject} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
        sentences.append(sentence)
        count += len(sentence.split())
    paragraphs = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs)


def warm(url: str, *, language: str = "en-US", words: int = DEFAULT_WORDS, seconds: float = DEFAULT_SECONDS,
         out: TextIO = sys.stdout, sleep: Callable[[float], None] = time.sleep) -> int:
    """Check generated prose against the server at `url`; returns the words checked."""
    deadline = time.monotonic() + seconds
    checked, fastest, seed = 0, float("inf"), 0
    with httpx.Client(timeout=120, trust_env=False) as client:
        while checked < words and time.monotonic() < deadline:
            text = prose(seed, CHUNK_WORDS)
            seed += 1
            started = time.monotonic()
            try:
                client.post(f"{url.rstrip('/')}/v2/check", data={"text": text, "language": language}).raise_for_status()
            except httpx.HTTPError as exc:
                print(f"warm-up stopped: {type(exc).__name__}: {exc}", file=out, flush=True)
                break
            took = time.monotonic() - started
            fastest = min(fastest, took)
            checked += len(text.split())
            print(f"warm-up: {checked} words, last check {took:.2f} s", file=out, flush=True)
            if took > BUSY_FACTOR * fastest:
                sleep(BUSY_PAUSE)  # a run is using the server or the machine: let it
    print(f"warm-up done: {checked} words", file=out, flush=True)
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--language", default="en-US")
    parser.add_argument("--words", type=int, default=DEFAULT_WORDS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    args = parser.parse_args(argv)
    warm(args.url, language=args.language, words=args.words, seconds=args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
