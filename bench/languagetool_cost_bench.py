"""What LanguageTool's CPU per article goes to, for the shipped English pipeline's requests.

    python bench/languagetool_cost_bench.py [--url URL] [--first 90] [--texts 40] [--rounds 2] [--configs a,b,...]

The text is real prose: the English articles of both labelled sets
(tests/fixtures/gate_eval, tests/fixtures/gate_heldout), as Markdown, reduced to the prose
the grammar check sends (`copydesk.text.extract_prose`). Each check is sent alone (one at a
time) and its cost is the java process's own CPU (user + system, /proc/<pid>/stat) before
and after it, so that a busy machine moves the wall time much more than the figures.

1. **First checks against later ones**: a fresh server (kept-server JVM: the full JIT,
   maxCheckThreads=2), or the one at `--url`, checks `--first` English articles, in order;
   CPU-s per 1,000 words for checks 1, 2-10, 11-30, 31-90 and 91+. Then copydesk's own
   warm-up (copydesk.services.warmup, `--warmup-words`) and its CPU.
2. **Per rule group**, on the now warm server: `--texts` articles checked under each
   configuration, the configurations interleaved `--rounds` times; CPU-s per 1,000 words and
   the difference to the shipped request (`shipped`: language en-US, default level, no rule
   or category disabled). `floor` enables one cheap rule only: what tokenizing, tagging and
   disambiguation cost with (almost) no rules.
3. **Would the verdicts change**: for each configuration, on how many articles the server's
   matches (rule, place, message, replacements, category: what copydesk's grammar report is
   made of; it drops some, never adds) differ from the shipped request's. A cut is only safe with 0 on every article *and* a reason that holds
   for text outside the set (a rule the gate ignores anyway); 0 on this set alone is not one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from gate_eval import _markdown  # noqa: E402

from copydesk.services import languagetool as lt  # noqa: E402
from copydesk.services.warmup import warm  # noqa: E402
from copydesk.settings import Settings  # noqa: E402
from copydesk.text import count_words, extract_prose  # noqa: E402

SETS = [ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json",
        ROOT / "tests" / "fixtures" / "gate_heldout" / "articles.json"]
LANGUAGE = "en-US"
CHEAP_RULE = "DOUBLE_PUNCTUATION"
#: name -> extra request parameters (on top of text and language).
CONFIGS: dict[str, dict[str, str]] = {
    "shipped": {},
    "floor": {"enabledRules": CHEAP_RULE, "enabledOnly": "true"},
    "no-spelling": {"disabledRules": "MORFOLOGIK_RULE_EN_US"},
    "no-metric-units": {"disabledRules": "METRIC_UNITS_EN_US"},
    "no-dash": {"disabledRules": "EN_DASH_RULE"},
    "-GRAMMAR": {"disabledCategories": "GRAMMAR"},
    "-TYPOS": {"disabledCategories": "TYPOS"},
    "-PUNCTUATION": {"disabledCategories": "PUNCTUATION"},
    "-STYLE": {"disabledCategories": "STYLE"},
    "-TYPOGRAPHY": {"disabledCategories": "TYPOGRAPHY"},
    "-CONFUSED_WORDS": {"disabledCategories": "CONFUSED_WORDS"},
    "-COLLOCATIONS": {"disabledCategories": "COLLOCATIONS"},
    "-MISC": {"disabledCategories": "MISC"},
    "-REDUNDANCY": {"disabledCategories": "REDUNDANCY"},
    "-CASING": {"disabledCategories": "CASING"},
    "-COMPOUNDING": {"disabledCategories": "COMPOUNDING"},
    "-SEMANTICS": {"disabledCategories": "SEMANTICS"},
    "-NONSTANDARD_PHRASES": {"disabledCategories": "NONSTANDARD_PHRASES"},
    "picky": {"level": "picky"},
    "en (no variant)": {"language": "en"},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU-s of `pid` (and its live children), from /proc."""
    total = 0.0
    for one in [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]:
        stat = Path(f"/proc/{one}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def english_texts() -> list[str]:
    """The prose copydesk sends for each English article of both labelled sets."""
    texts = []
    for path in SETS:
        for article in json.loads(path.read_text(encoding="utf-8"))["articles"]:
            if article["language"] == LANGUAGE:
                markdown = _markdown(article["title"], [(s["heading"], s["body"]) for s in article["sections"]])
                texts.append(extract_prose(markdown).text)
    return texts


def check(client: httpx.Client, pid: int, text: str, extra: dict[str, str]) -> tuple[float, list[dict[str, Any]]]:
    """(java CPU-s of this check, its matches)."""
    before = cpu_seconds(pid)
    response = client.post("/v2/check", data={"text": text, "language": LANGUAGE, **extra})
    response.raise_for_status()
    return cpu_seconds(pid) - before, response.json()["matches"]


def first_checks(client: httpx.Client, pid: int, texts: list[str], words: list[int]) -> None:
    cpus = [check(client, pid, text, {})[0] for text in texts]
    print("1. first checks against later ones (CPU-s per 1,000 words, one check at a time):")
    for lo, hi in ((0, 1), (1, 10), (10, 30), (30, 90), (90, len(texts))):
        if lo < len(texts):
            part = slice(lo, min(hi, len(texts)))
            print(f"   checks {lo + 1:>3}-{min(hi, len(texts)):<3} {sum(cpus[part]) / sum(words[part]) * 1000:7.3f}  "
                  f"({sum(words[part]):,} words, {sum(cpus[part]):.1f} CPU-s)")


def _key(matches: list[dict[str, Any]]) -> str:
    """What copydesk's grammar report is made of, per match (it filters some out, never adds)."""
    return json.dumps([(m["rule"]["id"], m["offset"], m["length"], m["message"],
                        [r["value"] for r in m["replacements"][:3]], m["rule"]["category"]["id"]) for m in matches])


def per_config(client: httpx.Client, pid: int, texts: list[str], words: list[int], names: list[str],
               rounds: int) -> None:
    cost: dict[str, list[float]] = {n: [] for n in names}
    found: dict[str, list[str]] = {}
    for r in range(rounds):
        for name in names:
            results = [check(client, pid, t, CONFIGS[name]) for t in texts]
            cost[name].append(sum(c for c, _ in results) / sum(words) * 1000)
            if r == 0:
                found[name] = [_key(m) for _, m in results]
    base = found.get("shipped") or [_key(check(client, pid, t, {})[1]) for t in texts]
    shipped = statistics.median(cost["shipped"]) if "shipped" in cost else float("nan")
    print(f"2./3. per configuration ({len(texts)} articles, {sum(words):,} words, {rounds} rounds):")
    print(f"   {'configuration':<22} {'CPU-s/1k words':>14} {'vs shipped':>10}  {'rounds':<20} matches changed")
    for name in names:
        med = statistics.median(cost[name])
        changed = sum(a != b for a, b in zip(base, found[name], strict=True))
        print(f"   {name:<22} {med:>14.3f} {med - shipped:>+10.3f}  "
              f"{' '.join(f'{c:.3f}' for c in cost[name]):<20} {changed}/{len(texts)} articles", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running LanguageTool server (its java process must be on this machine)")
    parser.add_argument("--first", type=int, default=90, help="articles checked first, in order (part 1)")
    parser.add_argument("--texts", type=int, default=40, help="articles per configuration (part 2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-words", type=int, default=60_000)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    texts = english_texts()
    words = [count_words(t, LANGUAGE) for t in texts]
    print(f"{len(texts)} English articles, {sum(words):,} words; load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores")
    server = None
    if args.url:
        url = args.url
        port = int(httpx.URL(url).port or 80)
        pid = next(c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid)
    else:
        settings = Settings(state_dir=Path(tempfile.mkdtemp(prefix="lt-cost-")), languagetool_url=None)
        server = lt.LanguageToolServer(settings, server_properties=lt.SERVER_PROPERTIES)
        server.kept = True  # the kept server's JVM: the full JIT
        started = time.perf_counter()
        server.start()
        url, pid = server.url, server.pid
        assert pid is not None
        print(f"fresh server (full JIT, maxCheckThreads=2) up in {time.perf_counter() - started:.1f} s")
    try:
        with httpx.Client(base_url=url, timeout=600, trust_env=False) as client:
            first_checks(client, pid, texts[:args.first], words[:args.first])
            if args.warmup_words:
                before, started = cpu_seconds(pid), time.perf_counter()
                checked = warm(url, words=args.warmup_words, out=open(os.devnull, "w"))  # noqa: SIM115
                print(f"   copydesk's warm-up: {checked:,} words, {cpu_seconds(pid) - before:.1f} CPU-s, "
                      f"{time.perf_counter() - started:.0f} s")
            names = [n.strip() for n in args.configs.split(",") if n.strip()]
            per_config(client, pid, texts[:args.texts], words[:args.texts], names, args.rounds)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
