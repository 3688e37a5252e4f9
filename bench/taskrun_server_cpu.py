"""The local Prefect server's CPU per article task run, and which Prefect settings change it.

For each server setting (a fresh `prefect server start` of its own, in a temporary
PREFECT_HOME), the script measures the server's idle CPU rate, then runs N articles of the
basic test pipeline (grammar off, no LanguageTool) against the fake API as a `copydesk-run`
flow run in a child process, once per client setting, task runs on and off. The server is a
separate process: its CPU is utime + stime of /proc/<pid>/stat (and its children) from before
the flow run until the server is idle again, minus its idle rate over that window.

    python bench/taskrun_server_cpu.py --articles 100

Prints one line per run: server CPU-s, server CPU-ms per article, the flow process's CPU-s
and wall seconds. The machine is shared: run it once, and read the figures as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: tests/fake_openai.py's fake API (its answers fit the test pipeline tests/fixtures/pipelines/basic.yaml),
#: `argv[1]` seconds per call, in a process of its own; prints its URL.
FAKE_API = (f"import sys, time; sys.path.insert(0, {str(ROOT / 'tests')!r}); from fake_openai import FakeOpenAI; "
            "fake = FakeOpenAI(latency=float(sys.argv[1])).start(); print(fake.url, flush=True); time.sleep(1e9)")
PY = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")

#: Server-side settings tried (the env of `prefect server start`).
SERVERS: dict[str, dict[str, str]] = {
    "default": {},
    "batched": {  # the task run recorder and event persister read and write in batches; no triggers
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    },
}

#: Client-side settings tried (the flow run's process), with task runs on unless named "off".
CLIENTS: dict[str, dict[str, str]] = {
    "off": {},  # no task runs: the hook processes the article plainly (the flow run, its artifacts stay)
    "on": {},  # copydesk run's defaults: INFO to the API, logs sent every 2 s
    "on, logs WARNING": {"PREFECT_LOGGING_LEVEL": "WARNING"},
    "on, logs every 10 s": {"PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "10"},
}

#: The flow run, in a child process (task runs switched off by patching the hook for "off").
DRIVER = r"""
import asyncio, json, resource, sys, time
from copydesk.request import RunRequest
from copydesk_flows import pipeline
spec, out, articles, on = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on"
if not on:
    async def plain(self, run, article):
        await run.process(article)
        self._report(run, article)
    pipeline.FlowHooks.article = plain
request = RunRequest(spec_path=spec, topics=[f"topic {n}" for n in range(articles)], out_dir=out, concurrency=8)
started = time.perf_counter()
result = asyncio.run(pipeline.run_pipeline(request))
wall = time.perf_counter() - started
pipeline.drain_prefect_services()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "by_status": result["by_status"]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid: int) -> float:
    """utime + stime of the process and its waited-for children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def tree_cpu(pid: int) -> float:
    """The process and its live children (the server may run its services in subprocesses)."""
    total = cpu_of(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_cpu(int(child))
        except OSError:
            pass
    return total


def idle_rate(pid: int, seconds: float = 6.0) -> float:
    before = tree_cpu(pid)
    time.sleep(seconds)
    return (tree_cpu(pid) - before) / seconds


def start_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_UI_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **env}
    proc = subprocess.Popen([PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the Prefect server did not start within 240 s")


def start_fake_api() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([PY, "-c", FAKE_API, "0.05"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def one_run(server: subprocess.Popen[bytes], url: str, api: str, client: str, articles: int, work: Path,
            idle: float) -> dict[str, float]:
    env = {**os.environ, "PREFECT_API_URL": url, "OPENAI_BASE_URL": api, "OPENAI_API_KEY": "sk-bench",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "PREFECT_LOGGING_EXTRA_LOGGERS": "copydesk", "PREFECT_LOGGING_LEVEL": "INFO",
           "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "COPYDESK_STATE_DIR": str(work / "state"),
           "COPYDESK_KEEP_SERVERS": "false", "DO_NOT_TRACK": "1", **CLIENTS[client]}
    spec = work / "fixtures" / "pipelines" / "basic.yaml"
    out = work / "out" / client.replace(" ", "_").replace(",", "")
    before, started = tree_cpu(server.pid), time.monotonic()
    done = subprocess.run([PY, "-c", DRIVER, str(spec), str(out), str(articles), "off" if client == "off" else "on"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the flow run failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # until the server is idle again (its recorders flush every few seconds)
    quiet_since, last = None, tree_cpu(server.pid)
    while True:
        time.sleep(1.0)
        now = tree_cpu(server.pid)
        if now - last <= max(idle * 1.5, 0.03):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 5:
                break
        else:
            quiet_since = None
        last = now
    window = time.monotonic() - started
    server_cpu = tree_cpu(server.pid) - before - idle * window
    return {"server": server_cpu, "flow_cpu": figures["cpu"], "wall": figures["wall"], "window": window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS),
                        help="client settings tried against the default server")
    parser.add_argument("--other-clients", nargs="+", choices=list(CLIENTS), default=["off", "on"],
                        help="client settings tried against the other servers")
    args = parser.parse_args()
    fake, api = start_fake_api()
    print(f"{args.articles} articles per run; {os.cpu_count()} cores; server CPU = /proc utime+stime minus idle",
          flush=True)
    print(f"{'server':<9} {'client':<22} {'server CPU-s':>12} {'ms/article':>10} {'flow CPU-s':>10} "
          f"{'wall s':>7} {'idle %':>6}", flush=True)
    try:
        for name in args.servers:
            with tempfile.TemporaryDirectory(prefix="taskrun-bench-") as tmp:
                work = Path(tmp)
                shutil.copytree(ROOT / "tests" / "fixtures", work / "fixtures")
                server, url = start_server(work / "prefect", SERVERS[name])
                try:
                    time.sleep(5)  # the server's start-up work settles
                    idle = idle_rate(server.pid)
                    for client in args.clients if name == "default" else args.other_clients:
                        r = one_run(server, url, api, client, args.articles, work, idle)
                        print(f"{name:<9} {client:<22} {r['server']:>12.2f} {1000 * r['server'] / args.articles:>10.1f} "
                              f"{r['flow_cpu']:>10.2f} {r['wall']:>7.1f} {100 * idle:>6.1f}", flush=True)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
    finally:
        fake.terminate()


if __name__ == "__main__":
    main()
