"""LanguageTool for batch runs: start time against steady-state CPU per 1,000 words, per set-up.

    python bench/languagetool_batch_bench.py [--articles 100] [--words 550] [--threads 4] [--rounds 2]
        [--variants c1,c2,c2-threads,c2-cache]

Each variant starts the embedded server from vendor/languagetool and then checks
`--articles` fresh articles of ~`--words` words (`GrammarChecker.check`, from `--threads`
threads at once, as a run does while its calls go on). It reports:

- start: spawn to /v2/healthcheck; first: the first en-US check (rule loading);
- early / late: the java process's CPU seconds per 1,000 words over the first and the
  last fifth of the articles (late = steady state, after the JIT has compiled what it will);
- total CPU s and wall s for the whole batch (start included), and RSS at the end.

Variants run one after the other and the whole list is repeated `--rounds` times
(A B C D A B C D), so a busy machine hurts each about the same; every round is printed.

    c1           what copydesk ran before: SerialGC, -XX:TieredStopAtLevel=1 (C1 only)
    c1-threads   c1 with the server's maxCheckThreads = 2 (one per core)
    c1-pipes     c1-threads with pipeline caching (rule pipelines kept between checks)
    c1-cache     c1-pipes with a result cache of 1,000 sentences too
    c2           SerialGC, the full tiered JIT (C1 then C2)
    c2-threads   c2 with the server's maxCheckThreads = 2 (one per core)
    c2-cache     c2-threads with pipeline caching and a result cache (pipelinePrewarming
                 kills the server at start with copydesk's language subset: ru-RU missing)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from languagetool_bench import make_markdown  # noqa: E402

from copydesk.qc.grammar import GrammarChecker  # noqa: E402
from copydesk.services import languagetool as lt  # noqa: E402
from copydesk.settings import Settings  # noqa: E402

C1 = "-XX:TieredStopAtLevel=1"
COMMON = tuple(o for o in lt.JVM_OPTIONS if o != C1)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "c1": ((*COMMON, C1), {}),
    "c1-threads": ((*COMMON, C1), {"maxCheckThreads": "2"}),
    "c1-pipes": ((*COMMON, C1), {"maxCheckThreads": "2", "pipelineCaching": "true"}),
    "c1-cache": ((*COMMON, C1), {"maxCheckThreads": "2", "pipelineCaching": "true", "cacheSize": "1000"}),
    "c2": (COMMON, {}),
    "c2-threads": (COMMON, {"maxCheckThreads": "2"}),
    "c2-cache": (COMMON, {"maxCheckThreads": "2", "pipelineCaching": "true", "cacheSize": "1000"}),
    # pipelinePrewarming=true is not offered: LanguageTool 6.8 prewarms a fixed list of languages
    # (ru-RU among them) and the server dies at start with copydesk's subset of language modules.
}


class _Server(lt.LanguageToolServer):
    def __init__(self, settings: Settings, jvm: tuple[str, ...], props: dict[str, str]) -> None:
        super().__init__(settings, jvm_options=jvm, server_properties=props)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def one(name: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    jvm, props = VARIANTS[name]
    server = _Server(Settings(state_dir=work / name, languagetool_url=None), jvm, props)
    t0 = time.perf_counter()
    server.start()
    start_s = time.perf_counter() - t0
    assert server.pid is not None
    proc = psutil.Process(server.pid)
    try:
        with httpx.Client(base_url=server.url, timeout=300, trust_env=False) as client:
            t = time.perf_counter()
            client.post("/v2/check", data={"language": "en-US", "text": "Warm up."}).raise_for_status()
            first_s = time.perf_counter() - t
        texts = [make_markdown(args.words, seed=hash((name, i)) & 0xFFFF) for i in range(args.articles)]
        fifth = max(1, args.articles // 5)
        with GrammarChecker(server.url, "en-US") as checker, ThreadPoolExecutor(args.threads) as pool:
            def batch(chunk: list[str]) -> int:
                return sum(report.words for report in pool.map(checker.check, chunk))

            cpu0 = cpu_seconds(proc)
            early_words = batch(texts[:fifth])
            cpu1 = cpu_seconds(proc)
            batch(texts[fifth:-fifth])
            cpu2 = cpu_seconds(proc)
            late_words = batch(texts[-fifth:])
            cpu3 = cpu_seconds(proc)
        wall = time.perf_counter() - t0
        return {
            "start": start_s, "first": first_s,
            "early": (cpu1 - cpu0) / early_words * 1000, "late": (cpu3 - cpu2) / late_words * 1000,
            "cpu": cpu3, "wall": wall, "rss": proc.memory_info().rss / 2**20,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--words", type=int, default=550)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    work = Path(tempfile.mkdtemp(prefix="lt-batch-"))
    import os

    print(f"{args.articles} articles x ~{args.words} words, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(f"{'round':>5} {'variant':<11} {'start s':>7} {'first s':>7} {'early CPU s/1k w':>16} "
          f"{'late CPU s/1k w':>15} {'total CPU s':>11} {'wall s':>7} {'RSS MB':>7}")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            res = one(name, args, work)
            results[name].append(res)
            print(f"{r + 1:>5} {name:<11} {res['start']:>7.2f} {res['first']:>7.2f} {res['early']:>16.3f} "
                  f"{res['late']:>15.3f} {res['cpu']:>11.1f} {res['wall']:>7.1f} {res['rss']:>7.0f}", flush=True)
    print("medians:")
    for name in names:
        rows = results[name]
        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        print(f"{'':>5} {name:<11} {med['start']:>7.2f} {med['first']:>7.2f} {med['early']:>16.3f} "
              f"{med['late']:>15.3f} {med['cpu']:>11.1f} {med['wall']:>7.1f} {med['rss']:>7.0f}")


if __name__ == "__main__":
    main()
