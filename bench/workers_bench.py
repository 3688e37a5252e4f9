"""copydesk's editor runs spread over Prefect `process` workers: one worker against two.

The production shape of README "Running on more machines", on one machine: a
Prefect server, the repository's prefect.yaml deployed with `prefect deploy` to a
`process` work pool, and K workers (`prefect worker start --pool P --limit L`)
that start each flow run in a process of its own. For each configuration the
benchmark triggers R editor runs of N topics at once through the API, waits for
all of them, and reports:

- wall time from the first trigger to the last completion (the flow runs' end_time),
  and its ratio to the first configuration;
- how many flow runs each worker executed (the flow runs' `prefect.worker.name` label);
- where a run's time went: waiting in the queue (Scheduled → Pending), starting its
  process (Pending → Running: Python, Prefect and copydesk imports), running
  (Running → Completed: the API calls, QC, export, artifacts);
- how busy the machine's cores were meanwhile, and the CPU seconds by process (flow runs, workers, server,
  fake API, and "others": processes outside the benchmark; more than 10 % there is reported as a problem);
- whether every article was exported (CSV rows in COPYDESK_OUTPUT_DIR).

The API is bench/fake_api_server.py (0.2 s + 10 ms per returned token, like
pipeline_bench.py); the spec is pipeline_bench's (title → outline → 5 sections,
grammar off, local moderation + content checks unless --qc none).

    .venv/bin/python bench/workers_bench.py [--runs 4] [--topics 10] [--configs 1x1 2x1 1x2]
        [--concurrency 32] [--qc local|none] [--keep]

A configuration `KxL` is K workers, each started with `--limit L`. The default
`1x2` row is a control: one worker allowed two runs at once.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_bench import PROMPTS, SPEC, start_fake, start_prefect  # noqa: E402

EDITOR = "copydesk-editor/editor"
TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}


# ------------------------------------------------------------------------------------------------ processes


def prefect_cli(*args: str) -> list[str]:
    return [PY, "-m", "prefect", *args]


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds (a worker may ignore SIGTERM for 60 s)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group: flow-run subprocesses left behind, if any
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def run_cli(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - started


def busy_seconds(a: Any, b: Any) -> float:
    """CPU seconds the whole machine spent busy between two psutil.cpu_times() samples."""
    total = sum(b) - sum(a)
    idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
    return total - idle


def _own(proc: psutil.Process, children: bool) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def cpu_sample(workers: list[subprocess.Popen], server: subprocess.Popen, fake: subprocess.Popen) -> dict[str, float]:
    """Cumulative CPU seconds: the whole machine, and the parts that are this benchmark's.

    A process worker waits for the flow-run processes it starts, so their CPU (and their children's) ends up
    in the worker's children times once they have exited."""
    machine = psutil.cpu_times()
    server_proc = psutil.Process(server.pid)
    try:
        server_tree = [server_proc, *server_proc.children(recursive=True)]
    except psutil.Error:
        server_tree = [server_proc]
    worker_procs = [psutil.Process(w.pid) for w in workers]
    return {
        "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        "runs": sum(_own(w, True) - _own(w, False) for w in worker_procs),
        "workers": sum(_own(w, False) for w in worker_procs),
        "server": sum(_own(p, True) for p in server_tree),
        "fake API": _own(psutil.Process(fake.pid), False),
        "bench": _own(psutil.Process(), False),
    }


def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    delta = {key: b[key] - a[key] for key in a}
    delta["others"] = max(0.0, delta["machine"] - sum(v for k, v in delta.items() if k != "machine"))
    return delta


def wait_children_reaped(workers: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """Until the workers have waited for their flow-run processes (so their CPU is in the children times)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not any(psutil.Process(w.pid).children() for w in workers):
                return
        except psutil.Error:
            return
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ one trial


@dataclass
class Trial:
    workers: int
    limit: int
    wall: float = 0.0
    completed: int = 0
    runs: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    missing_files: int = 0
    expected_rows: int = 0
    queue: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    peak_parallel: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by part; "machine" is everything
    cpu_wall: float = 0.0  # wall seconds over which cpu was sampled
    trigger_s: float = 0.0  # seconds the R create_flow_run_from_deployment calls took
    slowest_trigger: float = 0.0
    observed_wall: float = 0.0  # first trigger to the poll that saw every run final

    @property
    def cpu_busy(self) -> float:
        return self.cpu.get("machine", 0.0)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.workers}x{self.limit}"


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def wait_workers_online(client: Any, pool: str, names: list[str], procs: list[subprocess.Popen],
                        logs: list[Path], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        online = {w.name for w in client.read_workers_for_work_pool(pool, limit=200)
                  if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"}
        if set(names) <= online:
            return
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers {names} not online after {timeout:.0f} s (online: {sorted(online)})")
        time.sleep(0.2)


def run_trial(trial: Trial, *, client: Any, pool: str, deployment_id: uuid.UUID, env: dict[str, str],
              work: Path, pipeline: str, runs: int, topics: int, timeout: float, server: subprocess.Popen,
              fake: subprocess.Popen) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Cancelled

    out_dir = work / f"out-{trial.label}"
    worker_env = {**env, "COPYDESK_OUTPUT_DIR": str(out_dir), "COPYDESK_STATE_DIR": str(work / f"state-{trial.label}"),
                  "PREFECT_WORKER_QUERY_SECONDS": "1"}
    names = [f"bench-{trial.label}-w{i + 1}" for i in range(trial.workers)]
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        for name in names:
            log = work / f"{name}.log"
            logs.append(log)
            with open(log, "wb") as handle:
                procs.append(subprocess.Popen(
                    prefect_cli("worker", "start", "--pool", pool, "--type", "process", "--name", name,
                                "--limit", str(trial.limit)),
                    env=worker_env, cwd=work, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True))
        wait_workers_online(client, pool, names, procs, logs)

        cpu_before = cpu_sample(procs, server, fake)
        first_trigger = time.time()
        ids: list[uuid.UUID] = []
        for r in range(runs):
            batch = [f"{trial.label} run {r} topic {i}: making software a little better" for i in range(topics)]
            call = time.perf_counter()
            run = client.create_flow_run_from_deployment(
                deployment_id, parameters={"pipeline": pipeline, "topics": batch, "review_timeout": 0})
            trial.slowest_trigger = max(trial.slowest_trigger, time.perf_counter() - call)
            ids.append(run.id)
        trial.runs = runs
        trial.expected_rows = runs * topics
        trial.trigger_s = time.time() - first_trigger

        deadline = time.monotonic() + timeout
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=ids))
        while True:
            found = client.read_flow_runs(flow_run_filter=flow_filter, limit=len(ids))
            if len(found) == len(ids) and all(f.state and f.state.is_final() for f in found):
                break
            if time.monotonic() > deadline:
                trial.problems.append(f"timed out after {timeout:.0f} s; cancelling the unfinished runs")
                for f in found:
                    if not (f.state and f.state.is_final()):
                        client.set_flow_run_state(f.id, Cancelled(), force=True)
                break
            time.sleep(0.25)
        observed_end = time.time()
        trial.observed_wall = observed_end - first_trigger
        wait_children_reaped(procs)
        trial.cpu = cpu_delta(cpu_before, cpu_sample(procs, server, fake))
        trial.cpu_wall = time.time() - first_trigger

        found = client.read_flow_runs(flow_run_filter=flow_filter, limit=len(ids))
        ends, intervals = [], []
        worker_logs = {name: log.read_text(errors="replace") for name, log in zip(names, logs)}
        for f in found:
            if f.state and f.state.is_completed():
                trial.completed += 1
            else:
                trial.problems.append(f"flow run {f.name} ({f.id}) ended {f.state.type.value if f.state else None}: "
                                      f"{f.state.message if f.state else ''}")
            worker = (f.labels or {}).get("prefect.worker.name")
            if not worker:  # fall back to the worker logs
                worker = next((n for n, text in worker_logs.items() if str(f.id) in text), "?")
            trial.per_worker[worker] = trial.per_worker.get(worker, 0) + 1
            stamps: dict[str, float] = {}
            for state in client.read_flow_run_states(f.id):
                stamp = _ts(state.timestamp)
                stamps[state.type.value] = min(stamps.get(state.type.value, stamp), stamp)
            created = _ts(f.created) if f.created else first_trigger
            if {"PENDING", "RUNNING", "COMPLETED"} <= set(stamps):
                trial.queue.append(stamps["PENDING"] - created)
                trial.startup.append(stamps["RUNNING"] - stamps["PENDING"])
                trial.running.append(stamps["COMPLETED"] - stamps["RUNNING"])
                intervals.append((stamps["PENDING"], stamps["COMPLETED"]))
            if f.end_time:
                ends.append(_ts(f.end_time))
            # the articles this run exported
            folders = sorted(out_dir.glob(f"*{f.id.hex[:8]}")) if out_dir.is_dir() else []
            if len(folders) != 1 or not (folders[0] / "articles.csv").is_file():
                trial.problems.append(f"flow run {f.name}: no single run folder with articles.csv in {out_dir}")
                continue
            with open(folders[0] / "articles.csv", encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
            trial.rows += len(rows)
            for row in rows:
                trial.statuses[row.get("status", "?")] = trial.statuses.get(row.get("status", "?"), 0) + 1
                if not (folders[0] / row.get("path", "")).is_file():
                    trial.missing_files += 1
        trial.wall = (max(ends) if len(ends) == len(ids) else observed_end) - first_trigger
        events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
        level = 0
        for _, step in events:
            level += step
            trial.peak_parallel = max(trial.peak_parallel, level)
        for name in names:
            trial.per_worker.setdefault(name, 0)
        # cross-check the labels against the workers' own logs ("Worker 'NAME' submitting flow run 'ID'")
        for name in names:
            text = (work / f"{name}.log").read_text(errors="replace")
            in_log = sum(1 for i in ids if f"submitting flow run '{i}'" in text)
            if in_log != trial.per_worker[name]:
                trial.problems.append(f"{name}: {trial.per_worker[name]} runs by label, {in_log} in its log")
    finally:
        for proc in procs:
            stop_group(proc, grace=3.0)


# ------------------------------------------------------------------------------------------------ report


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def report(trials: list[Trial], *, runs: int, topics: int, args: argparse.Namespace, cores: int) -> None:
    base = trials[0]
    print()
    print(f"{'workers':>7} {'limit':>5} {'runs':>4} {'articles':>8} {'wall s':>7} {'vs ' + base.label:>7} "
          f"{'art/min':>7} {'runs per worker':<16} {'CSV rows':>8} {'CPU busy':>8}  statuses")
    for t in trials:
        per_worker = " ".join(f"{name.rsplit('-', 1)[-1]}:{n}" for name, n in sorted(t.per_worker.items()))
        busy = t.cpu_busy / (t.cpu_wall * cores) if t.cpu_wall else float("nan")
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(t.statuses.items()))
        if t.missing_files:
            statuses += f"; {t.missing_files} files missing"
        print(f"{t.workers:>7} {t.limit:>5} {t.runs:>4} {t.expected_rows:>8} {t.wall:>7.1f} "
              f"{base.wall / t.wall if t.wall else float('nan'):>7.2f} {t.expected_rows / t.wall * 60:>7.0f} "
              f"{per_worker:<16} {f'{t.rows}/{t.expected_rows}':>8} {busy:>8.0%}  {statuses}")
    print()
    print("Where a flow run's time went (means, seconds), and how many ran at once:")
    print(f"{'config':>6} {'queued':>7} {'process start':>13} {'running':>8} {'run total':>9} {'peak at once':>12}")
    for t in trials:
        print(f"{t.label:>6} {mean(t.queue):>7.1f} {mean(t.startup):>13.1f} {mean(t.running):>8.1f} "
              f"{mean(t.startup) + mean(t.running):>9.1f} {t.peak_parallel:>12}")
    print()
    parts = ["runs", "workers", "server", "fake API", "bench", "others"]
    print("CPU seconds per flow run, by process (runs: the flow-run processes; others: not this benchmark):")
    print(f"{'config':>6} " + " ".join(f"{p:>8}" for p in parts) + f" {'machine':>8}")
    for t in trials:
        n = max(t.runs, 1)
        print(f"{t.label:>6} " + " ".join(f"{t.cpu.get(p, 0.0) / n:>8.2f}" for p in parts)
              + f" {t.cpu_busy / n:>8.2f}")
    print("(statuses are the QC verdicts of the exported articles; every status is exported: a CSV row and a "
          "Markdown file,\n published/ or held/. The fake API's sections repeat one paragraph, so the content "
          "check rejects them as repetitive.)" if any("rejected" in t.statuses for t in trials) else "")
    for t in trials:
        if t.cpu_busy and t.cpu.get("others", 0.0) > 0.1 * t.cpu_busy:
            t.problems.append(f"{t.cpu['others']:.1f} CPU s ({t.cpu['others'] / t.cpu_busy:.0%} of the machine's) "
                              f"went to processes outside this benchmark: the figures are disturbed")
    problems = [(t.label, p) for t in trials for p in t.problems]
    if problems:
        print()
        for label, problem in problems:
            print(f"problem ({label}): {problem}")

    by_label = {t.label: t for t in trials}
    one, two = by_label.get("1x1"), by_label.get("2x1")
    if one is None or two is None or not one.wall or not two.wall:
        return
    ctrl = by_label.get("1x2")
    speedup = one.wall / two.wall
    run1, run2 = mean(one.startup) + mean(one.running), mean(two.startup) + mean(two.running)
    busy1 = one.cpu_busy / (one.cpu_wall * cores)
    busy2 = two.cpu_busy / (two.cpu_wall * cores)
    slower = run2 / run1 - 1
    cpu_run1 = one.cpu.get("runs", 0.0) / max(one.runs, 1)
    all_exported = all(t.rows == t.expected_rows and not t.missing_files for t in trials)
    print()
    text = (
        f"Measured on {cores} cores, fake API {args.latency:g} s + {args.per_token * 1000:g} ms/token, "
        f"{runs} editor runs of {topics} topic(s) each (concurrency {args.concurrency} per run). "
        f"Each process worker starts every flow run in a process of its own and with --limit 1 runs one at a time, "
        f"so two workers mean two flow runs at once: the {runs} runs took {two.wall:.1f} s instead of "
        f"{one.wall:.1f} s (x{speedup:.2f}; x2 would be perfect). "
        f"A run alone took {run1:.1f} s ({mean(one.startup):.1f} s starting its process: Python, Prefect and "
        f"copydesk imports; {mean(one.running):.1f} s running), and its process used {cpu_run1:.1f} CPU s of them "
        f"({cpu_run1 / run1:.0%}); the rest it spent waiting, mostly on the API. Two at once took {run2:.1f} s "
        f"each ({slower:+.0%}: "
        + ("no measurable cost of sharing the cores" if abs(slower) < 0.05 else f"what sharing {cores} cores costs")
        + f"); the cores were {busy1:.0%} busy with one worker and {busy2:.0%} with two. "
    )
    if abs(slower) < 0.05:
        text += (f"Side by side, runs were no slower than alone: they mostly wait on the API, and two of them kept "
                 f"the cores only {busy2:.0%} busy, so the second worker overlaps that waiting for free. What "
                 "separates the gain from x2, if anything, is not CPU contention but the hand-off between one "
                 "worker's runs "
                 "(the finished process's exit, then the next poll of the pool, every second here) and "
                 "run-to-run noise. ")
    elif slower < 0.25:
        text += ("Side by side, runs were somewhat slower: their CPU parts (process start-up and imports above "
                 "all, then QC and export) compete for the cores, while the API waiting still overlaps for free; "
                 "that, and the hand-off between one worker's runs, keeps the gain below x2. ")
    else:
        text += ("A good part of each run is CPU (process start-up and imports above all), and on this machine "
                 "two runs compete for it, so the second worker helps only as far as the work waits on the API. ")
    if ctrl is not None and ctrl.wall:
        if abs(ctrl.wall / two.wall - 1) < 0.15:
            text += (f"The control row, one worker with --limit 2, took {ctrl.wall:.1f} s, about the same: the gain "
                     f"comes from running two flow runs at once, not from the second worker process, which only "
                     f"polls the pool and starts subprocesses. ")
        else:
            text += (f"The control row, one worker with --limit 2, took {ctrl.wall:.1f} s against {two.wall:.1f} s "
                     f"with two workers. ")
    text += ("Every article was exported (one CSV row and one Markdown file per topic triggered)." if all_exported
             else "Not every article was exported; see the problems above.")
    print(fill(text))
    print()
    cpu_per_article = max((t.cpu_busy - t.cpu.get("others", 0.0)) / max(t.expected_rows, 1) for t in (one, two))
    ceiling = 60 * cores / cpu_per_article if cpu_per_article else float("nan")
    # cores one run keeps busy on average: everything this benchmark spent per run over a run's length
    cores_per_run = (two.cpu_busy - two.cpu.get("others", 0.0)) / max(two.runs, 1) / run2 if run2 else float("nan")
    print(fill(
        f"How far one machine goes: at this latency and {topics} topic(s) per run, "
        f"{one.expected_rows / one.wall * 60:.0f} articles/min with one worker and "
        f"{two.expected_rows / two.wall * 60:.0f} with two (measured, first trigger to last completion, process "
        f"start-ups included). Each run kept about {cores_per_run:.2f} of a core busy over its {run2:.0f} s "
        f"(its own process, the server's share, the worker), so about {cores / cores_per_run:.1f} runs at once "
        f"would fill the {cores} cores; at {cpu_per_article:.2f} CPU s per article (the higher of the two rows) "
        f"they would run out at about {ceiling:.0f} articles/min. Both are extrapolations, not measured: more "
        f"topics per run spread the per-run start-up thinner, and a real API's rate limits may bind first."))


def fill(text: str) -> str:
    import textwrap

    return textwrap.fill(text, width=110)


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="editor runs triggered per configuration")
    parser.add_argument("--topics", type=int, default=10, help="topics (articles) per run")
    parser.add_argument("--configs", nargs="+", default=["1x1", "2x1", "1x2"],
                        help="configurations WORKERSxLIMIT; the first is the reference of the ratio")
    parser.add_argument("--concurrency", type=int, default=32, help="the spec's concurrency (calls in flight per run)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--per-token", type=float, default=0.01)
    parser.add_argument("--qc", choices=["none", "local"], default="local",
                        help="none: no QC; local: local moderation + content checks (grammar is always off)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for one configuration's runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, outputs)")
    args = parser.parse_args()
    configs = []
    for config in args.configs:
        k, _, limit = config.partition("x")
        configs.append(Trial(workers=int(k), limit=int(limit or 1)))

    work = Path(tempfile.mkdtemp(prefix="copydesk-workers-bench-"))
    # This process talks to the server through Prefect's client: give it the temporary home and no telemetry
    # before prefect is imported.
    os.environ.update(PREFECT_HOME=str(work / "prefect-home"), **TELEMETRY_OFF)
    pipelines = work / "pipelines"
    (pipelines / "prompts").mkdir(parents=True)
    for name, text in PROMPTS.items():
        (pipelines / "prompts" / name).write_text(text, encoding="utf-8")
    (pipelines / "bench.yaml").write_text(SPEC.format(concurrency=args.concurrency, grammar="false",
                                                      moderation="false" if args.qc == "none" else "true"))
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["definitions"]["work_pool"]["name"]
    cores = psutil.cpu_count() or 1

    fake = prefect = None
    failed = True
    try:
        idle_a = psutil.cpu_times()
        time.sleep(1.0)
        busy_before = busy_seconds(idle_a, psutil.cpu_times()) / cores
        fake, url = start_fake(args.latency, args.per_token)
        started = time.perf_counter()
        prefect, api = start_prefect(work / "prefect-home")
        server_s = time.perf_counter() - started
        os.environ["PREFECT_API_URL"] = api
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_"))}
        env.update(TELEMETRY_OFF, PREFECT_HOME=str(work / "prefect-home"), PREFECT_API_URL=api, COLUMNS="200",
                   OPENAI_BASE_URL=url, COPYDESK_PIPELINES_DIR=str(pipelines),
                   COPYDESK_LANGUAGETOOL_URL="http://127.0.0.1:9")
        pool_s = run_cli(prefect_cli("work-pool", "create", pool, "--type", "process", "--overwrite"), env, work, 120)
        deploy_s = run_cli(prefect_cli("--no-prompt", "deploy", "--name", "editor"), env, ROOT, 300)

        from prefect.client.orchestration import SyncPrefectClient

        print(f"fake API: {args.latency:g} s + {args.per_token * 1000:g} ms/token; {args.runs} editor runs x "
              f"{args.topics} topics per configuration; concurrency {args.concurrency} per run; "
              f"QC: {'local moderation + content checks' if args.qc == 'local' else 'off'}; {cores} cores "
              f"({busy_before:.0%} busy before start)")
        print(f"Prefect server up in {server_s:.1f} s; work pool {pool!r} ({pool_s:.1f} s); "
              f"`prefect deploy --name editor` from prefect.yaml ({deploy_s:.1f} s)")
        with SyncPrefectClient(api) as client:
            deployment = client.read_deployment_by_name(EDITOR)
            assert deployment.work_pool_name == pool, deployment.work_pool_name
            for trial in configs:
                run_trial(trial, client=client, pool=pool, deployment_id=deployment.id, env=env, work=work,
                          pipeline="bench", runs=args.runs, topics=args.topics, timeout=args.timeout,
                          server=prefect, fake=fake)
                print(f"  {trial.label}: {trial.completed}/{trial.runs} runs completed in {trial.wall:.1f} s "
                      f"(triggering took {trial.trigger_s:.2f} s, slowest call {trial.slowest_trigger:.2f} s; "
                      f"the poll saw the last one at {trial.observed_wall:.1f} s)", flush=True)
        report(configs, runs=args.runs, topics=args.topics, args=args, cores=cores)
        failed = any(t.problems for t in configs)
    finally:
        if prefect is not None:
            stop_group(prefect, grace=10.0)
        if fake is not None:
            fake.send_signal(signal.SIGINT)
            try:
                fake.wait(5)
            except subprocess.TimeoutExpired:
                fake.kill()
        if args.keep or failed:
            print(f"\nlogs and outputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
