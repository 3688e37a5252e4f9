"""`copydesk run` wall time with and without the early start (calls made while Prefect is imported).

    python bench/early_start_bench.py --api-url http://127.0.0.1:4200/api --topics 3 --repeat 3 --latency 0 1

Runs the real command against the fake API (tests/fake_openai.py, `--latency` seconds per call) and the Prefect server at --api-url. "late" is the same command with
copydesk.orchestration.can_start_early patched to say no (a sitecustomize on PYTHONPATH), so
the run waits for Prefect's import and starts inside the flow run. Prints the median wall
time of each. The machine is shared: read the figures as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: tests/fake_openai.py's fake API (its answers fit the test pipeline tests/fixtures/pipelines/basic.yaml),
#: `argv[1]` seconds per call, in a process of its own; prints its URL.
FAKE_API = (f"import sys, time; sys.path.insert(0, {str(ROOT / 'tests')!r}); from fake_openai import FakeOpenAI; "
            "fake = FakeOpenAI(latency=float(sys.argv[1])).start(); print(fake.url, flush=True); time.sleep(1e9)")
COPYDESK = str(Path(sys.executable).with_name("copydesk"))
LATE = "import copydesk.orchestration as o\no.can_start_early = lambda request, spec: False\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="a running Prefect server's API URL")
    parser.add_argument("--topics", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 1.0])
    args = parser.parse_args()
    print(f"{args.topics} topics, median of {args.repeat}; {os.cpu_count()} cores (shared machine)")
    print(f"{'latency s/call':>14} {'early s':>8} {'late s':>8} {'saved s':>8}")
    with tempfile.TemporaryDirectory(prefix="early-bench-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "tests" / "fixtures", work / "fixtures")
        (work / "late").mkdir()
        (work / "late" / "sitecustomize.py").write_text(LATE)
        for latency in args.latency:
            fake = subprocess.Popen([sys.executable, "-c", FAKE_API, str(latency)], stdout=subprocess.PIPE, text=True)
            assert fake.stdout is not None
            url = fake.stdout.readline().strip()
            times: dict[str, list[float]] = {"early": [], "late": []}
            try:
                for n in range(args.repeat):
                    for way in ("early", "late"):
                        path = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
                        if way == "late":
                            path.insert(0, str(work / "late"))
                        env = {**os.environ, "PREFECT_API_URL": args.api_url, "OPENAI_BASE_URL": url,
                               "OPENAI_API_KEY": "sk-bench", "COPYDESK_STATE_DIR": str(work / "state"),
                               "COPYDESK_KEEP_SERVERS": "false", "PYTHONPATH": os.pathsep.join(path)}
                        started = time.perf_counter()
                        done = subprocess.run(
                            [COPYDESK, "run", str(work / "fixtures" / "pipelines" / "basic.yaml"), "--out",
                             str(work / "out"), "--run-id", f"{way}-{latency}-{n}",
                             *sum((["-t", f"topic {i}"] for i in range(args.topics)), [])],
                            env=env, capture_output=True, text=True)
                        times[way].append(time.perf_counter() - started)
                        if done.returncode != 0:
                            raise SystemExit(f"copydesk run failed: {done.stderr[-2000:]}")
            finally:
                fake.terminate()
            early, late = statistics.median(times["early"]), statistics.median(times["late"])
            print(f"{latency:>14.1f} {early:>8.2f} {late:>8.2f} {late - early:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
