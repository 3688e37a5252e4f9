"""copydesk's own CPU time against the number of topics in one run (up to 10,000).

    python bench/cpu_linearity_bench.py [--sizes 1000 3000 10000] [--concurrency 64]

The fake API answers at once (no latency), so the run is as CPU-bound as it gets. Each
size is one `copydesk run` (a new process; the local Prefect server is started once,
before, with `copydesk server start`, so its start is not counted). The CPU time is the
`copydesk` process's own (user + system, from wait4): neither the Prefect server's, nor
LanguageTool's (the grammar check is off here; it is LanguageTool's CPU, not copydesk's,
and is measured by languagetool_batch_bench.py), nor the fake API's. Local moderation
and the content checks stay on.

It prints CPU seconds, CPU ms per article and that per-article cost against the smallest
size: linear growth keeps it near 1.0 (start-up, paid once, makes the smallest size's
per-article cost the highest); super-linear growth shows as a rising ratio. Also the
run's peak RSS (the kernel's high-water mark, ru_maxrss from wait4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_bench import BENCH_SPEC, COPYDESK, PROMPTS, ROOT, start_fake, stop_fake  # noqa: E402


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s of the process itself, peak RSS MB, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak = [0]

    def sample() -> None:
        try:
            handle = psutil.Process(proc.pid)
            while proc.returncode is None:
                peak[0] = max(peak[0], handle.memory_info().rss)
                time.sleep(0.2)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    # ru_maxrss (KiB on Linux) is the kernel's own peak: the 0.2 s samples missed the QC report's
    # spike at the end (953 MB sampled against 1,001 MB, issue 25)
    peak_bytes = max(peak[0], usage.ru_maxrss * 1024)
    return wall, usage.ru_utime + usage.ru_stime, peak_bytes / 2**20, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="copydesk-cpu-"))
    (work / "prompts").mkdir()
    for name, text in PROMPTS.items():
        (work / "prompts" / name).write_text(text)
    (work / "bench.yaml").write_text(BENCH_SPEC.replace("grammar: {enabled: true}", "grammar: {enabled: false}"))
    fake, url = start_fake(0.0, 0.0, 300)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "PREFECT_API_URL", "COPYDESK_", "PREFECT_HOME"))}
    env.update(OPENAI_BASE_URL=url, PREFECT_HOME=str(work / "prefect-home"), COPYDESK_STATE_DIR=str(work / "state"),
               COPYDESK_OUTPUT_DIR=str(work / "outputs"))
    try:
        start = subprocess.run([COPYDESK, "server", "start", "--port", "0", "--no-ui"], env=env, capture_output=True,
                               text=True)
        assert start.returncode == 0, start.stderr
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores; concurrency {args.concurrency}")
        print(f"{'topics':>7} {'wall s':>8} {'CPU s':>8} {'CPU ms/article':>14} {'x per article vs first':>22} "
              f"{'peak MB':>8}")
        first: float | None = None
        for size in args.sizes:
            topics = work / f"topics-{size}.txt"
            topics.write_text("\n".join(f"topic {i}: making software {i} a little better" for i in range(size)))
            wall, cpu, peak, code = run_measured(
                [COPYDESK, "run", str(work / "bench.yaml"), "--topics-file", str(topics), "--concurrency",
                 str(args.concurrency), "--out", str(work / f"out-{size}")], env)
            assert code == 0, f"copydesk run exited {code}"
            per = cpu / size * 1000
            first = first or per
            print(f"{size:>7} {wall:>8.1f} {cpu:>8.1f} {per:>14.2f} {per / first:>22.2f} {peak:>8.0f}", flush=True)
    finally:
        stop_fake(fake)
        subprocess.run([COPYDESK, "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
