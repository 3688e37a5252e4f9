"""LanguageTool: start-up time, memory, and check time per 1,000 words, per JVM set-up.

    .venv/bin/python bench/languagetool_bench.py [--runs 5] [--words 1000]
        [--variants default,serial-c2,parallel] [--first-check en-US,de-DE,zh-CN]

For each JVM variant it starts the embedded server from vendor/languagetool
(scripts/fetch-languagetool.sh), then measures:

- start: seconds from spawning java to /v2/healthcheck answering;
- first check: the first en-US check (LanguageTool loads the language's rules then);
- RSS idle / warm: the java process's resident memory after start and after the runs;
- raw ms/1k words: POST /v2/check of the plain text with httpx (the baseline);
- copydesk ms/1k words: `GrammarChecker.check` on the same text as Markdown
  (prose extraction, the language_tool_python round trip, filtering, report);
- ratio: copydesk / raw.

Times per 1,000 words are means over --runs checks of fresh text (every run
shuffles and varies its sentences, so no cache can answer), after --settle
untimed checks; raw and copydesk alternate which goes first. Prints one table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx  # noqa: E402
import psutil  # noqa: E402

from copydesk.qc.grammar import GrammarChecker  # noqa: E402
from copydesk.services.languagetool import JVM_OPTIONS, LanguageToolServer  # noqa: E402
from copydesk.settings import Settings  # noqa: E402
from copydesk.text import count_words  # noqa: E402

_C1 = "-XX:TieredStopAtLevel=1"
_BASE = tuple(o for o in JVM_OPTIONS if o not in ("-XX:+UseSerialGC", _C1))
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": JVM_OPTIONS,  # SerialGC, C1 only: what copydesk runs
    "serial-c2": ("-XX:+UseSerialGC", *_BASE),  # SerialGC, full tiered JIT
    "parallel": ("-XX:+UseParallelGC", "-XX:ParallelGCThreads=2", *_BASE),
    "parallel-c1": ("-XX:+UseParallelGC", "-XX:ParallelGCThreads=2", _C1, *_BASE),
    "g1": ("-XX:+UseG1GC", *_BASE),
}

SUBJECTS = ["The team", "Our editor", "A new writer", "The local model", "Every reviewer", "The pipeline", "She", "He"]
VERBS = ["checks", "drafts", "publishes", "reviews", "rewrites", "shortens", "explains", "translates"]
OBJECTS = [
    "the outline before lunch",
    "a short article about caching",
    "every heading in the draft",
    "the budget report for {n} topics",
    "an example that uses {n} tokens",
    "the section on rate limits",
    "a paragraph that was too long",
    "the summary for the weekly newsletter",
]
TAILS = [
    "",
    " because the deadline is close",
    " and then sends it to the client",
    " so that nobody has to wait",
    " while the server is still warm",
]
MISTAKES = [
    "He go to the office every morning.",
    "Their is a problem with the recieve function.",
    "We buyed a apple for the demo.",
    "This sentense has a speling mistake.",
]


def make_markdown(words: int, seed: int) -> str:
    """About `words` words of Markdown: headings and paragraphs, ~1 error per 60 words."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    section = 1
    while total < words:
        if len(paragraphs) % 4 == 0:
            heading = f"## Part {section}: notes on topic {rng.randint(1, 999)}"
            paragraphs.append(heading)
            total += count_words(heading, "en-US")
            section += 1
        sentences = []
        for _ in range(rng.randint(3, 6)):
            obj = rng.choice(OBJECTS).format(n=rng.randint(2, 5000))
            sentences.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {obj}{rng.choice(TAILS)}.")
        if rng.random() < 0.5:
            sentences.insert(rng.randrange(len(sentences)), rng.choice(MISTAKES))
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += count_words(paragraph, "en-US")
    return "# A benchmark article\n\n" + "\n\n".join(paragraphs) + "\n"


def plain(markdown: str) -> str:
    return "\n\n".join(line.lstrip("# ") for line in markdown.split("\n\n"))


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def bench_variant(name: str, options: tuple[str, ...], args: argparse.Namespace, state_dir: Path) -> dict[str, object]:
    settings = Settings(state_dir=state_dir, languagetool_url=None)
    server = LanguageToolServer(settings, jvm_options=options)
    started = time.perf_counter()
    server.start()
    start_s = time.perf_counter() - started
    assert server.pid is not None
    pid = server.pid
    try:
        idle = rss_mb(pid)
        first_checks: dict[str, float] = {}
        with httpx.Client(base_url=server.url, timeout=300, trust_env=False) as client:
            for language in args.first_check:
                t = time.perf_counter()
                client.post("/v2/check", data={"language": language, "text": "Warm up."}).raise_for_status()
                first_checks[language] = time.perf_counter() - t
            with GrammarChecker(server.url, "en-US") as checker:
                for settle in range(args.settle):  # let the JIT compile the hot paths first
                    checker.check(make_markdown(args.words, seed=-1 - settle))
                raw_ms: list[float] = []
                ours_ms: list[float] = []
                issues: list[int] = []

                def raw_run(run: int) -> None:
                    text = plain(make_markdown(args.words, seed=run))
                    words = count_words(text, "en-US")
                    t = time.perf_counter()
                    client.post("/v2/check", data={"language": "en-US", "text": text}).raise_for_status()
                    raw_ms.append((time.perf_counter() - t) * 1000 * 1000 / words)

                def ours_run(run: int) -> None:
                    markdown = make_markdown(args.words, seed=1000 + run)
                    t = time.perf_counter()
                    report = checker.check(markdown)
                    ours_ms.append((time.perf_counter() - t) * 1000 * 1000 / report.words)
                    issues.append(report.issues)

                for run in range(args.runs):  # alternate the order: neither side always goes first
                    first, second = (raw_run, ours_run) if run % 2 == 0 else (ours_run, raw_run)
                    first(run)
                    second(run)
        warm = rss_mb(pid)
    finally:
        server.stop()
    raw = statistics.mean(raw_ms)
    ours = statistics.mean(ours_ms)
    return {
        "variant": name,
        "start_s": start_s,
        "first": first_checks,
        "rss_idle": idle,
        "rss_warm": warm,
        "raw": raw,
        "ours": ours,
        "ratio": ours / raw,
        "issues": statistics.mean(issues),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--words", type=int, default=1000)
    parser.add_argument("--settle", type=int, default=3, help="untimed checks before timing")
    parser.add_argument("--variants", default="default,serial-c2,parallel", help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--first-check", default="en-US", type=lambda s: [x for x in s.split(",") if x], help="languages to time the first check of"
    )
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")

    rows = []
    with tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp:
        for name in names:
            print(f"... {name}: {' '.join(VARIANTS[name])}", file=sys.stderr, flush=True)
            rows.append(bench_variant(name, VARIANTS[name], args, Path(tmp)))

    first_cols = args.first_check
    header = (
        f"{'variant':<10} {'start s':>7} "
        + " ".join(f"{'1st ' + lang + ' s':>12}" for lang in first_cols)
        + f" {'RSS idle MB':>11} {'RSS warm MB':>11} {'raw ms/1kw':>10} {'copydesk ms/1kw':>15} {'ratio':>6} {'issues':>6}"
    )
    print(f"LanguageTool check of ~{args.words} words, mean of {args.runs} runs; heap {Settings().languagetool_heap}")
    print(header)
    print("-" * len(header))
    for r in rows:
        first = r["first"]
        assert isinstance(first, dict)
        print(
            f"{r['variant']:<10} {r['start_s']:>7.2f} "
            + " ".join(f"{first[lang]:>12.2f}" for lang in first_cols)
            + f" {r['rss_idle']:>11.0f} {r['rss_warm']:>11.0f} {r['raw']:>10.1f} {r['ours']:>15.1f}"
            f" {r['ratio']:>6.2f} {r['issues']:>6.1f}"
        )


if __name__ == "__main__":
    main()
