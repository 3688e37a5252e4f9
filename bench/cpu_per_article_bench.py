"""CPU-seconds per article of each process, for one or more source trees, runs interleaved.

    python bench/cpu_per_article_bench.py --tree before=/tmp/before/src --tree after=src
        [--articles 100] [--rounds 4] [--profile short] [--py-spy DIR]

A tree is a copy of `src/` with `flows/` beside it (`src/copydesk_flows` links to it), e.g.
`git archive <commit> src flows | tar -x -C /tmp/before`. The shape of `pipeline_bench.py`'s
measured command (the default spec, grammar on a kept LanguageTool, local moderation, one
Prefect task run per article, the fake API at 0.2 s + 10 ms/token, `--concurrency 32`)
without the baseline: one fresh state folder and `PREFECT_HOME`, a first 1-article run that
starts the kept servers, a wait for LanguageTool's warm-up, then `--rounds` rounds of one
`copydesk run` per tree (`PYTHONPATH=<tree>`; the trees in the order given, reversed every
other round), one right after the other against the same kept servers. For each run: the
CPU-s per article of the `copydesk` process (wait4), LanguageTool, the Prefect server and the
fake API (/proc, as pipeline_bench.py), and what LanguageTool was sent (its log's "Check
done" lines: requests and characters per article). It prints each run, then the median per tree.

`--py-spy DIR` records each run's copydesk process with py-spy (every thread it does not see
idle) into DIR/<tree>-<round>.txt (collapsed stacks); py-spy's sampling adds to the CPU figures.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_bench import (  # noqa: E402
    COPYDESK,
    PROFILES,
    PY,
    cpu_snapshot,
    leave_work,
    start_fake,
    stop_fake,
    stop_servers,
    timed,
    wait_for_warmup,
    write_spec,
)

_CHECK = re.compile(r"Check done: (\d+) chars")
NAMES = ("copydesk", "languagetool", "prefect-server", "fake-api")


def languagetool_sent(log: Path, start: int) -> tuple[int, int, int]:
    """(requests, characters, the log's new end) from LanguageTool's log after byte `start`."""
    if not log.exists():
        return 0, 0, start
    with log.open("rb") as handle:
        handle.seek(start)
        data = handle.read().decode("utf-8", errors="replace")
        end = handle.tell()
    sizes = [int(m.group(1)) for m in _CHECK.finditer(data)]
    return len(sizes), sum(sizes), end


def measure(cmd: list[str], env: dict[str, str], state: Path, fake_pid: int, size: int,
            spy: Path | None) -> dict[str, float]:
    log = state / "logs" / "languagetool.log"
    _, _, mark = languagetool_sent(log, 0)
    if spy is not None:
        cmd = [str(Path(COPYDESK).with_name("py-spy")), "record", "--format", "raw", "--threads", "--rate", "100", "-o", str(spy), "--", *cmd]
    before = cpu_snapshot(state, fake_pid)
    done = timed(cmd, env)
    after = cpu_snapshot(state, fake_pid)
    assert done.code == 0, f"copydesk run exited {done.code}"
    requests, chars, _ = languagetool_sent(log, mark)
    cpu = {"copydesk": done.cpu, **{name: after[name] - before.get(name, 0.0) for name in after}}
    row = {name: value / size for name, value in cpu.items()}
    row.update(wall=done.seconds, requests=requests / size, chars=chars / size)
    return row


def line(label: str, row: dict[str, float]) -> str:
    cpus = " ".join(f"{row.get(name, 0.0):>14.4f}" for name in NAMES)
    total = sum(row.get(name, 0.0) for name in NAMES[:3])
    return (f"{label:<16} {cpus} {total:>10.4f} {row['requests']:>9.2f} {row['chars']:>9.0f} "
            f"{row['wall']:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="label=path of a src/ folder")
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--py-spy", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], str(Path(t.split("=", 1)[1]).resolve())) for t in args.tree]
    work = Path(tempfile.mkdtemp(prefix="copydesk-cpu-article-"))
    spec = write_spec(work, "default")
    fake, url = start_fake(0.2, 0.01, PROFILES[args.profile])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "PREFECT_API_URL", "COPYDESK_", "PREFECT_HOME", "PYTHONPATH"))}
    env.update(OPENAI_BASE_URL=url, PREFECT_HOME=str(work / "prefect-home"), COPYDESK_STATE_DIR=str(work / "state"),
               COPYDESK_OUTPUT_DIR=str(work / "outputs"), COPYDESK_KEEP_SERVERS="true",
               DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    topics = work / "topics.txt"
    topics.write_text("\n".join(f"topic {i}: making software {i} a little better" for i in range(args.articles)))
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    for _, src in trees:  # no tree pays its bytecode compilation inside a measured run
        for folder in (Path(src), Path(src).parent / "flows"):
            if folder.is_dir():
                subprocess.run([PY, "-m", "compileall", "-q", str(folder)], check=False, capture_output=True)
    print(f"profile {args.profile}, {args.articles} articles, concurrency {args.concurrency}; "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores", flush=True)
    try:
        first = timed([COPYDESK, "run", str(spec), "-t", "first run", "--out", str(work / "first")],
                      {**env, "PYTHONPATH": trees[0][1]})
        assert first.code == 0, "the first run failed"
        print(f"first run {first.seconds:.1f} s; {wait_for_warmup(work / 'state')}", flush=True)
        print(f"{'run':<16} " + " ".join(f"{name:>14}" for name in NAMES)
              + f" {'3 processes':>10} {'LT req':>9} {'LT chars':>9} {'wall s':>7}   (CPU-s and LT per article)")
        rows: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
        for r in range(args.rounds):
            # ABBA: every other round in reverse, so that no tree always meets a warmer LanguageTool JIT
            for label, src in (trees if r % 2 == 0 else trees[::-1]):
                spy = args.py_spy / f"{label}-{r}.txt" if args.py_spy else None
                cmd = [COPYDESK, "run", str(spec), "--topics-file", str(topics), "--concurrency",
                       str(args.concurrency), "--out", str(work / f"out-{label}-{r}")]
                row = measure(cmd, {**env, "PYTHONPATH": src}, work / "state", fake.pid, args.articles, spy)
                rows[label].append(row)
                print(line(f"{label} #{r + 1}", row), flush=True)
        for label, runs in rows.items():
            median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            print(line(f"{label} median", median))
    finally:
        stop_fake(fake)
        stop_servers(env)
        leave_work(work, args.keep)


if __name__ == "__main__":
    main()
