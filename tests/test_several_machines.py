"""The several-machines set-up, run for real: PostgreSQL, a Prefect server on it, a `process`
work pool with two workers as separate processes, and the editor deployment of prefect.yaml
(`prefect deploy`), answered by the fake OpenAI-compatible API over loopback.

    four editor runs race under one shared allowance that is smaller than their work:
        the API's own count never exceeds the allowance, every topic of every run is in
        its CSV, and both workers took runs;
    a worker killed with SIGKILL in the middle of a run (with the flow run's process):
        the flow run set to AwaitingRetry (the UI's Retry) is finished by the other worker
        in the same run folder, and no call the killed run had already stored is paid again;
        the reservations the killed run left open in its allowance (its reservation journal)
        are settled by the retry: once it ends, nothing is reserved.

Only loopback; PostgreSQL gets a data folder, a socket folder and a port of its own, and
every process started here is stopped even when an assertion fails. Skipped only when the
PostgreSQL server programs are not installed (`bash scripts/setup.sh --dev` installs
Debian's `postgresql`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import FIXTURES, ROOT, SECRET_KEY, free_port, run_cli
from fake_openai import FakeOpenAI
from test_deployments import base_env, prefect_command, read_csv, run_folder, stop_group, wait_for

from copydesk.allowance import ReservationJournal, counter_name

pytestmark = pytest.mark.integration

PG_PROGRAMS = ("initdb", "pg_ctl", "postgres", "createdb")
POOL = "copydesk-pool"  # prefect.yaml's work pool
EDITOR = "copydesk-editor/editor"
TIMINGS: dict[str, float] = {}


def postgres_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl, postgres and createdb: PATH first (a symlink is
    followed to its real folder), then Debian's /usr/lib/postgresql/<version>/bin, newest first."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates += [Path(found).parent, Path(os.path.realpath(found)).parent]
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()], reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PG_PROGRAMS):
            return folder
    return None


class Postgres:
    """A PostgreSQL server of the test's own: initdb in a temporary folder, pg_ctl on a free
    loopback port with its unix socket in that folder. As root it runs as the `postgres`
    user (PostgreSQL refuses to run as root), or `nobody` without one."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="copydesk-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = uuid.uuid4().hex
        self.ids: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                entry = pwd.getpwnam("nobody")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        os.chmod(self.root, 0o700)
        self.started = False

    def run(self, *args: str, timeout: float = 120) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password
        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], env=env, capture_output=True, text=True,
                                timeout=timeout, cwd=self.root, **self.ids)
        assert result.returncode == 0, f"{args[0]}: {result.stdout[-2000:]}{result.stderr[-2000:]}"

    def start(self) -> str:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password, encoding="utf-8")
        if self.ids:
            os.chown(pwfile, self.ids["user"], self.ids["group"])
        self.run("initdb", "-D", str(self.data), "-U", "copydesk", "--pwfile", str(pwfile), "-E", "UTF8",
                 "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w",
                 "-t", "60", "start")
        self.started = True
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "copydesk", "prefect")
        return f"postgresql+asyncpg://copydesk:{self.password}@127.0.0.1:{self.port}/prefect"

    def stop(self) -> None:
        try:
            if self.started:
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_prefect_server(database_url: str, home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = base_env(PREFECT_HOME=str(home), PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url,
                   PREFECT_UI_ENABLED="false", PREFECT_API_URL="")
    with open(log, "wb") as handle:
        proc = subprocess.Popen(prefect_command("server", "start", "--host", "127.0.0.1", "--port", str(port)),
                                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_group(proc, grace=5)
    raise AssertionError(f"prefect server did not answer within 180 s: {log.read_text(errors='replace')[-3000:]}")


def make_pipelines(root: Path, team: str, solo: str) -> Path:
    """`team`: four editor runs share its small allowance; `solo`: one article at a time,
    the run a worker is killed in (an allowance of its own, large)."""
    shutil.copytree(FIXTURES / "prompts", root / "prompts")
    folder = root / "pipelines"
    folder.mkdir()
    base = yaml.safe_load((FIXTURES / "pipelines" / "basic.yaml").read_text(encoding="utf-8"))
    # The operator records both allowances (`copydesk budget create`, in the test); a spec names one
    # (and may repeat the record's values, which must agree).
    team_spec = {**base, "name": "team",
                 "budget": {"max_total_tokens": 60000, "shared": {"name": team, "max_tokens": 4000}}}
    solo_spec = {**base, "name": "solo", "concurrency": 1,
                 "budget": {"max_total_tokens": 60000, "shared": {"name": solo}}}
    for spec in (team_spec, solo_spec):
        (folder / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return folder


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def about(body: dict[str, Any], word: str) -> bool:
    return any(word in str(m.get("content", "")) for m in body.get("messages", []))


def worker_of(logs: dict[str, Path], flow_run_id: uuid.UUID) -> list[str]:
    """The workers that ran the flow run: the flow run's process, started by its worker, writes
    "Flow run 'NAME' - View at .../flow-run/ID" to that worker's output. (A worker's
    "submitting flow run" line alone is no proof: two workers may both try to claim a run,
    and the server aborts the second claim.)"""
    return [name for name, log in logs.items() if f"/flow-run/{flow_run_id}" in log.read_text(errors="replace")]


def flow_run_pid(flow_run: Any) -> int | None:
    """The flow run's process (the process worker records it as the infrastructure pid)."""
    text = str(flow_run.infrastructure_pid or "")
    tail = text.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def ours(pid: int, out_dir: Path) -> bool:
    """True when `pid` is a flow run's process this test started (its environment names the
    test's output folder): a finished run's pid may belong to someone else's process by now."""
    try:
        return f"COPYDESK_OUTPUT_DIR={out_dir}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def kill_group(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return True


def valid_records(calls: Path) -> list[str]:
    keys = []
    for line in calls.read_bytes().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except (ValueError, KeyError, TypeError):
            pass
    return keys


@pytest.fixture
def postgres() -> Iterator[str]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl, postgres and createdb were found neither on "
                    "PATH nor under /usr/lib/postgresql/*/bin); `bash scripts/setup.sh --dev` installs Debian's "
                    "postgresql")
    server = Postgres(bindir)
    try:
        started = time.monotonic()
        url = server.start()
        TIMINGS["postgres (initdb, start, createdb)"] = round(time.monotonic() - started, 1)
        yield url
    finally:
        server.stop()


def test_two_workers_on_a_postgres_backed_server_share_one_allowance_and_survive_a_kill(
    postgres: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import AwaitingRetry, Crashed

    timings = TIMINGS
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 1)
        clock = now

    team, solo = f"team-{uuid.uuid4().hex[:8]}", f"solo-{uuid.uuid4().hex[:8]}"
    allowance = 4000
    with ExitStack() as stack:
        server, api = start_prefect_server(postgres, tmp_path / "prefect-home", tmp_path / "server.log")
        stack.callback(stop_group, server, 10)
        lap("prefect server")
        env = base_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "prefect-home"))
        pool = subprocess.run(prefect_command("work-pool", "create", POOL, "--type", "process", "--overwrite"),
                              env=env, capture_output=True, text=True, timeout=120)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deploy = subprocess.run(prefect_command("--no-prompt", "deploy", "--name", "editor"), env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=180)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        lap("work pool + prefect deploy")

        fake = stack.enter_context(FakeOpenAI(latency=0.05, per_token_latency=0.002))
        pipelines = make_pipelines(tmp_path, team, solo)
        operator_env = {**env, "COPYDESK_STATE_DIR": str(tmp_path / "state")}
        berlin = ["--period", "day", "--timezone", "Europe/Berlin"]
        for name, options in ((team, ["--max-tokens", str(allowance), *berlin]),
                              (solo, ["--max-tokens", "1000000", "--period", "total"])):
            made = run_cli(["budget", "create", name, *options], operator_env)
            assert made.returncode == 0, made.stderr
        out_dir = tmp_path / "outputs"  # one folder both workers write to: shared storage
        worker_env = {**env, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": SECRET_KEY,
                      "COPYDESK_PIPELINES_DIR": str(pipelines), "COPYDESK_OUTPUT_DIR": str(out_dir),
                      "COPYDESK_STATE_DIR": str(tmp_path / "state"), "PREFECT_WORKER_QUERY_SECONDS": "1",
                      "COPYDESK_BACKOFF_INITIAL": "0.05", "COPYDESK_BACKOFF_MAX": "0.5"}
        workers: dict[str, subprocess.Popen] = {}
        logs: dict[str, Path] = {}
        for name in ("worker-a", "worker-b"):
            logs[name] = tmp_path / f"{name}.log"
            with open(logs[name], "wb") as handle:
                # --limit 2: a worker takes at most two runs at once, so four runs need both
                workers[name] = subprocess.Popen(
                    prefect_command("worker", "start", "--pool", POOL, "--type", "process", "--name", name,
                                    "--limit", "2"),
                    env=worker_env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
            stack.callback(stop_group, workers[name], 5)
        client = stack.enter_context(SyncPrefectClient(api))
        started_runs: list[uuid.UUID] = []

        @stack.callback
        def kill_flow_run_processes() -> None:  # runs before the workers stop: they may still be up
            for run_id in started_runs:
                try:
                    pid = flow_run_pid(client.read_flow_run(run_id))
                    if pid is not None and ours(pid, out_dir):
                        kill_group(pid)
                except Exception:  # noqa: BLE001 - clean-up goes on
                    continue
        editor = client.read_deployment_by_name(EDITOR)
        assert editor.work_pool_name == POOL

        def tail() -> str:
            return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-2500:]}" for n, p in logs.items())

        # ---------------------------------------------------------------- four editor runs, one allowance
        topics = {i: [f"Run {i} alpha", f"Run {i} beta", f"Run {i} gamma"] for i in range(4)}
        runs = [client.create_flow_run_from_deployment(
                    editor.id, parameters={"pipeline": "team", "topics": topics[i], "vars": {}, "review_timeout": 0})
                for i in range(4)]
        started_runs += [r.id for r in runs]
        finals = [wait_for(lambda r=r: (lambda f: f if f.state and f.state.is_final() else None)(client.read_flow_run(r.id)),
                           240, f"flow run {r.id} to finish") for r in runs]
        lap("four editor runs")
        for final in finals:
            assert final.state.is_completed(), (final.state, tail())
        assert fake.total_tokens <= allowance, f"the API billed {fake.total_tokens} of an allowance of {allowance}"
        stopped = 0
        for i, run in enumerate(runs):
            folder = run_folder(out_dir, run.id)
            frame = read_csv(folder)
            assert sorted(frame["topic"]) == sorted(topics[i]), frame
            stopped += json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("stopped_by_budget", False)
        assert stopped >= 1, f"12 articles should need more than {allowance}; the API billed {fake.total_tokens}"
        assert fake.total_tokens >= 0.5 * allowance  # the runs used the allowance, they did not just stop
        took = {name for run in runs for name in worker_of(logs, run.id)}
        assert took == {"worker-a", "worker-b"}, (took, tail())
        billed_team = fake.total_tokens
        # The editor form says what is left: each run ends by writing it into the deployment.
        form = client.read_deployment(editor.id)
        assert f"- {team} (team): " in form.description and "of 4,000 tokens" in form.description, form.description
        assert f"- {team} (team): " in form.parameter_openapi_schema["properties"]["budget"]["description"]

        # ---------------------------------------------------------------- a worker killed in the middle of a run
        fake.latency = 0.25  # slower calls: the run is surely in the middle when the kill comes
        solo_topics = ["Solo one", "Solo two", "Solo three", "Solo four"]
        victim_run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "solo", "topics": solo_topics, "vars": {}, "review_timeout": 0})
        started_runs.append(victim_run.id)

        def left_open(folder: Path) -> tuple[int, int]:
            """(tokens of reservations the journal shows taken and not settled, of ambiguous ones)."""
            entries = ReservationJournal(folder / "reservations.jsonl").load()
            return (sum(e.tokens for e in entries if e.left_open), sum(e.tokens for e in entries if e.ambiguous))

        def stored_enough() -> Path | None:
            folders = [p for p in out_dir.iterdir() if p.name.endswith(victim_run.id.hex[:8])] if out_dir.exists() else []
            calls = folders[0] / "calls.jsonl" if folders else None
            return calls if calls and calls.exists() and len(valid_records(calls)) >= 6 else None

        solo_counter = counter_name(solo, "UTC", "total")

        def solo_reserved() -> int:
            """The solo allowance's reserved tokens as the server holds them (copydesk_flows.allowance.counters)."""
            used = client.read_global_concurrency_limit_by_name(solo_counter).active_slots
            spent = client.read_global_concurrency_limit_by_name(solo_counter + ":spent").active_slots
            return used - min(spent, used)

        calls = wait_for(stored_enough, 180, "the solo run to store 6 calls")
        (victim,) = worker_of(logs, victim_run.id)
        # The machine dies: the worker and the flow run's process (Prefect starts it in a
        # process group of its own, so both groups) get SIGKILL at once, while a call is at the
        # API (its reservation taken, its answer at least 0.25 s away).
        pid = flow_run_pid(client.read_flow_run(victim_run.id))
        assert pid is not None and ours(pid, out_dir), client.read_flow_run(victim_run.id)
        wait_for(lambda: fake.state.in_flight > 0 and left_open(calls.parent)[0] > 0, 60,
                 "a call of the solo run in flight", interval=0.01)
        os.killpg(workers[victim].pid, signal.SIGKILL)
        kill_group(pid)
        workers[victim].wait(10)
        wait_for(lambda: gone(pid), 10, "the killed flow run's process to be gone")
        stored_at_kill = set(valid_records(calls))  # the dead process writes nothing more
        open_at_kill, ambiguous_at_kill = left_open(calls.parent)
        reserved_at_kill = solo_reserved()
        # The dead process's calls in flight stay reserved: nobody is left to settle them.
        assert open_at_kill > 0, "the kill came between two calls: nothing was left open"
        assert open_at_kill <= reserved_at_kill <= open_at_kill + ambiguous_at_kill, (
            open_at_kill, ambiguous_at_kill, reserved_at_kill)
        lap("solo run until the kill")
        assert not client.read_flow_run(victim_run.id).state.is_final()  # nobody is left to report it

        # What the server's heartbeat check or an operator does, then the UI's Retry. Requests the
        # dead process had sent reach the fake first: everything after the retry is the retry's.
        client.set_flow_run_state(victim_run.id, Crashed(message="worker killed"), force=True)
        time.sleep(1.0)
        wait_for(lambda: fake.state.in_flight == 0, 30, "the fake API to answer what the dead process sent")
        seen_at_kill = len(fake.state.requests)
        sent_before = [canonical(b) for b in fake.state.requests[:seen_at_kill] if about(b, "Solo")]
        client.set_flow_run_state(victim_run.id, AwaitingRetry(message="Retry from the test"), force=True)
        retried = wait_for(lambda: (lambda f: f if f.state and f.state.is_final() else None)(
            client.read_flow_run(victim_run.id)), 180, "the retried flow run to finish")
        lap("retry on the other worker")
        assert retried.state.is_completed(), (retried.state, tail())
        survivor = "worker-b" if victim == "worker-a" else "worker-a"
        assert survivor in worker_of(logs, victim_run.id)

        folder = run_folder(out_dir, victim_run.id)
        frame = read_csv(folder)
        assert sorted(frame["topic"]) == sorted(solo_topics)
        assert set(frame["status"]) == {"published"}, frame[["topic", "status"]]
        for path in frame["path"]:
            assert (folder / path).read_text(encoding="utf-8").strip()
        assert not [p for p in folder.rglob("*.tmp")], "a half-written file was left behind"
        sent_after = [canonical(b) for b in fake.state.requests[seen_at_kill:] if about(b, "Solo")]
        assert len(sent_after) == len(set(sent_after))
        paid_twice = set(sent_before) & set(sent_after)
        # A call that the killed run had stored is never sent again; only calls that were in
        # flight when it died (sent, not yet stored) can be: at most one with concurrency 1.
        assert len(paid_twice) <= len(set(sent_before)) - len(stored_at_kill), (len(paid_twice), len(stored_at_kill))
        assert len(paid_twice) <= 1
        final_keys = valid_records(folder / "calls.jsonl")
        assert stored_at_kill <= set(final_keys) and len(final_keys) == len(set(final_keys))
        assert len(set(sent_before) | set(sent_after)) == len(final_keys)  # every call of the run, stored once
        # The retry settled, in full, what the killed run had left open; its own calls settled too.
        reserved_after = solo_reserved()
        if ambiguous_at_kill == 0:
            assert reserved_after == 0, (reserved_after, open_at_kill)
            assert any(f"left open by an interrupted run: {open_at_kill} tokens" in log.read_text(errors="replace")
                       for log in logs.values()), tail()  # the retry says what it settled
        else:  # an increment sent as the kill came may have landed: it stays (see ReservationJournal)
            assert reserved_after <= ambiguous_at_kill, (reserved_after, ambiguous_at_kill)
        assert not [e for e in ReservationJournal(folder / "reservations.jsonl").load() if e.left_open]
        status = run_cli(["budget", "status", solo, "--json"], env)  # what the operator sees
        assert status.returncode == 0, status.stdout + status.stderr
        (shown,) = json.loads(status.stdout)
        assert shown["reserved"] == reserved_after and shown["spent"] > 0, shown

    timings["total"] = round(sum(timings.values()), 1)
    print(f"several machines: {json.dumps(timings)}; team runs billed {billed_team} of {allowance}; "
          f"solo: {len(stored_at_kill)} calls stored at the kill, {len(paid_twice)} sent again after the retry, "
          f"{open_at_kill} tokens left reserved by the killed run, {reserved_after} after the retry")
