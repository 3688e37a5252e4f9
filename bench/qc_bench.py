"""QC cost per 1,000 words: local moderation, content checks, the whole gate.

    .venv/bin/python bench/qc_bench.py [--repeat 7] [--sizes 300,1000,3000,10000]

Set COPYDESK_LANGUAGETOOL_URL (a running LanguageTool server) to time the
grammar checker too. Prints one table; times are medians over --repeat runs.

Baseline: `profanity_check.predict_prob` on sentences split beforehand (the
classifier's own cost). `LocalModerator.classify` adds Markdown stripping,
sentence splitting and the result; the ratio column is ours / baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from copydesk.qc.content import (  # noqa: E402
    check_length,
    check_outline_coverage,
    check_repetition,
    check_truncation,
)
from copydesk.qc.check import Draft  # noqa: E402
from copydesk.qc.gate import QualityGate  # noqa: E402
from copydesk.qc.moderation import LocalModerator, local_model_load_seconds  # noqa: E402
from copydesk.qc.grammar import GrammarPolicy  # noqa: E402
from copydesk.spec import QCSpec  # noqa: E402
from copydesk.text import count_words, plain_text, split_sentences  # noqa: E402

EN_SENTENCES = [
    "A flaky network call should not fail a whole pipeline.",
    "Prefect lets a task declare how many times it is retried and how long it waits between attempts.",
    "The defaults are conservative, so most teams tune them once they have seen real failure rates.",
    "Start with a delay of one second and double it on every attempt.",
    "Cap the delay so that a long outage does not stall the run for hours.",
    "When the server sends a Retry-After header, wait at least that long.",
    "Authentication errors are never retried because a wrong key stays wrong.",
    "Record every retry in the logs together with the status code and the delay.",
    "A task that only succeeds on its fifth attempt is a warning sign even when the run is green.",
    "Token budgets protect the monthly bill when many articles are generated at once.",
    "Reserve the worst case before each call and settle the real usage afterwards.",
    "Concurrent calls can then never overshoot the cap, whatever their order.",
    "Export everything that is finished when the budget runs out and mark the rest as incomplete.",
    "A budget alert at eighty percent gives the team time to react before the hard stop.",
    "Pin the model version in the pipeline spec and try upgrades on a copy first.",
    "Keep the API key in the environment and rotate it every ninety days.",
    "Editors review the articles that the gate could not decide on its own.",
    "Grammar checks catch typos that a model makes more often than people expect.",
    "Outline coverage makes sure every promised section was actually written.",
    "A section cut off by max_tokens usually ends in the middle of a sentence.",
]
ZH_SENTENCES = [
    "网络调用偶尔失败，不应该让整个流水线停下来。",
    "任务可以声明重试次数和两次尝试之间的等待时间。",
    "第一次等待一秒，之后每次加倍。",
    "为等待时间设置上限，避免长时间故障拖住整个运行。",
    "认证错误从不重试，因为错误的密钥不会自己变对。",
    "每次重试都要连同状态码和等待时间写入日志。",
    "令牌预算在批量生成文章时保护每月的账单。",
    "每次调用前预留最坏情况，调用后按实际用量结算。",
    "预算用完时导出已完成的内容，其余标记为未完成。",
    "在流水线配置中固定模型版本，先在副本上试用升级。",
]


def make_article(words: int, language: str, seed: int = 7) -> tuple[str, list[str], list[tuple[str, str]]]:
    """A Markdown article of about `words` words in sections of ~150 words, sentences in random order."""
    rng = random.Random(seed)
    pool = ZH_SENTENCES if language.startswith("zh") else EN_SENTENCES
    sections: list[tuple[str, str]] = []
    total = 0
    while total < words:
        heading = f"Section {len(sections) + 1}"
        body_sentences: list[str] = []
        body_words = 0
        while body_words < 150 and total + body_words < words:
            sentence = rng.choice(pool)
            body_sentences.append(sentence)
            body_words += count_words(sentence, language)
        body = ("" if language.startswith("zh") else " ").join(body_sentences)
        sections.append((heading, body))
        total += body_words
    markdown = "# Benchmark article\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in sections) + "\n"
    return markdown, [h for h, _ in sections], sections


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_grammar_checker(url: str, language: str):  # noqa: ANN201 - whatever copydesk.qc.grammar provides
    """copydesk.qc.grammar.GrammarChecker pointed at `url`, or None when it cannot be built."""
    try:
        from copydesk.qc.grammar import GrammarChecker
    except ImportError as exc:
        print(f"grammar: copydesk.qc.grammar is not importable ({exc}); skipped", file=sys.stderr)
        return None
    params = inspect.signature(GrammarChecker).parameters
    offered = {
        "language": language,
        "url": url,
        "server_url": url,
        "remote_server": url,
        "languagetool_url": url,
        "policy": GrammarPolicy(),
    }
    kwargs = {name: value for name, value in offered.items() if name in params}
    try:
        return GrammarChecker(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports and carries on
        print(f"grammar: cannot build GrammarChecker({', '.join(kwargs)}): {exc}; skipped", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default="300,1000,3000,10000", help="article sizes in words")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    moderator = LocalModerator(0.8)
    moderator.load()
    from profanity_check import predict_prob

    print(f"local classifier load (first in this process): {local_model_load_seconds():.3f} s")
    sentences = list(EN_SENTENCES) * 50  # 1,000 sentences
    per_1000_sentences = median_seconds(lambda: predict_prob(sentences), args.repeat)
    print(f"predict_prob on 1,000 sentences: {per_1000_sentences * 1000:.1f} ms")

    url = os.environ.get("COPYDESK_LANGUAGETOOL_URL")
    print()
    header = (
        f"{'lang':<5} {'words':>6} {'sent.':>5} | {'baseline':>9} {'moderate':>9} {'ratio':>5} | "
        f"{'content':>8} {'length':>7} {'cover':>7} {'repeat':>7} | {'gate':>8}"
        + (f" {'grammar':>9}" if url else "")
    )
    print("ms per 1,000 words (median of %d)" % args.repeat)
    print(header)
    print("-" * len(header))

    for language in ("en-US", "zh-CN"):
        grammar = make_grammar_checker(url, language) if url else None
        for size in sizes:
            markdown, outline, sections = make_article(size, language)
            words = count_words(plain_text(markdown), language)
            split = split_sentences(plain_text(markdown))
            finish = ["stop"] * len(sections)
            per_k = 1000.0 / words

            baseline = median_seconds(lambda: predict_prob(split), args.repeat)
            moderate = median_seconds(lambda: moderator.classify([markdown]), args.repeat)
            length = median_seconds(lambda: check_length(count_words(plain_text(markdown), language), 300, None), args.repeat)
            cover = median_seconds(lambda: check_outline_coverage(outline, sections), args.repeat)
            repeat = median_seconds(lambda: check_repetition(markdown, language, 0.25), args.repeat)
            content = median_seconds(
                lambda: (
                    check_length(count_words(plain_text(markdown), language), 300, None),
                    check_outline_coverage(outline, sections),
                    check_repetition(markdown, language, 0.25),
                    check_truncation(finish),
                ),
                args.repeat,
            )
            policy = QCSpec(grammar=GrammarPolicy(enabled=False))
            gate = QualityGate(policy, language, moderator=moderator)
            gate_s = median_seconds(
                lambda: asyncio.run(gate.assess(Draft("", "", outline, sections, language, markdown=markdown,
                                                  finish_reasons=finish), editorial=False)), args.repeat
            )
            row = (
                f"{language[:2]:<5} {words:>6} {len(split):>5} | {baseline * per_k * 1000:>9.2f} "
                f"{moderate * per_k * 1000:>9.2f} {moderate / baseline:>5.2f} | {content * per_k * 1000:>8.2f} "
                f"{length * per_k * 1000:>7.2f} {cover * per_k * 1000:>7.2f} {repeat * per_k * 1000:>7.2f} | "
                f"{gate_s * per_k * 1000:>8.2f}"
            )
            if grammar is not None:
                grammar_s = median_seconds(lambda: grammar.check(markdown), max(1, args.repeat // 2))
                row += f" {grammar_s * per_k * 1000:>9.1f}"
            print(row)
    print()
    print("baseline = predict_prob on pre-split sentences; moderate = LocalModerator.classify on the Markdown;")
    print("content = length + coverage + repetition + truncation; gate = QualityGate.assess with grammar off")
    print("(one asyncio.run and one worker thread per call included).")


if __name__ == "__main__":
    main()
