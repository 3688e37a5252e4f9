"""`copydesk run`, typed as a user types it, against a hand-written asyncio + httpx script.

Both make the same calls (title → outline → 5 sections per topic) at the same concurrency
against the same fake API, whose latency is a fixed part plus a per-token part (0.2 s +
10 ms/token). Every ratio is measured in this invocation: each copydesk command is timed
right after its own baseline run, and the medians of `--repeat` pairs are compared.

Profiles (the section's length; title and outline are the same in both):

    long    ~300-token sections: 3.2 s each
    short   ~150-token sections: 1.7 s each (0.2 s + 10 ms/token)

Setups, each in a fresh state folder and PREFECT_HOME (a new user on a clean machine):

    default    nothing started by hand. The first command ever is timed and reported
               (it starts the local Prefect server, migrating a fresh database, and
               LanguageTool); then the measured commands, each a new process as in a
               fresh shell.
    server     `copydesk server start` first (timed apart), then the same.
    temporary  COPYDESK_KEEP_SERVERS=false: Prefect's temporary per-process server and a
               LanguageTool per run (the behaviour before servers were kept; optional).

The spec is the default one (pipelines/tech-blog.yaml with its prompts and QC: grammar
on, local moderation, the content checks) with `--concurrency` on the command line, as
the issue's user typed it; `--spec bench` uses the bench's own small prompts instead.

    python bench/pipeline_bench.py                                   # both profiles, both setups, 100 articles
    python bench/pipeline_bench.py --profiles short --setups default --sizes 100 --repeat 3
    python bench/pipeline_bench.py --profiles long --setups server --sizes 1000 --repeat 1   # RSS at 1,000
    python bench/pipeline_bench.py --profiles short --setups default --repeat 3 --busy 1     # a CPU-bound neighbour
    python bench/pipeline_bench.py --profiles short --setups default --repeat 3 --moderation api

Conditions:

    --busy N          N CPU-bound processes (a busy loop each) run beside the measured pairs,
                      baseline and copydesk alike (not beside the first command or the warm-up).
    --moderation api  the default spec's `provider: auto` gets an API key (a dummy one; the fake API
                      checks none), so copydesk moderates through the fake API's /moderations; the
                      baseline then sends each article's text there too, in one request. `local`
                      (the default): no key, so `auto` means the local classifier, and the baseline
                      moderates nothing.

Peak RSS is that of the `copydesk` process itself (sampled every 50 ms); the kept servers'
RSS is printed apart. Everything started is stopped at the end.

CPU-seconds per article, per process (the figure that travels between machines; seconds
do not): the `copydesk` command's own (user + system, from wait4), and the CPU each kept
process used while that command ran: LanguageTool, the Prefect server (each with its
live child processes, from /proc/<pid>/stat before and after the command), and the fake
API (the stand-in for the model server). The baseline script's own CPU is printed beside
them. One line per row: the median over its pairs.

The first measured command does not race LanguageTool's JIT warm-up (`--warmup`):

    wait   (default) after the first command, wait until the kept LanguageTool's warm-up
           (copydesk.services.warmup) has written "warm-up done" and the server is idle
           (its CPU under 5 % of a core over 2 s); the wait and its CPU are printed.
    run    an unmeasured `copydesk run` of --warmup-articles articles first, no wait.
    none   neither (how the bench ran before issue 25).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
COPYDESK = str(Path(PY).with_name("copydesk"))
PROFILES = {"long": 300, "short": 150}  # section words = completion tokens

BENCH_SPEC = """\
name: bench
language: en-US
model: gpt-4o-mini
prompts_dir: prompts
stages:
  title: {prompt: title.j2, temperature: 0.9, max_tokens: 24}
  outline: {prompt: outline.j2, temperature: 0.3, max_tokens: 200, min_sections: 3, max_sections: 6}
  expansion: {prompt: section.j2, temperature: 0.7, top_p: 0.9, max_tokens: 400, presence_penalty: 0.6}
budget: {max_total_tokens: 100000000}
qc:
  grammar: {enabled: true}
  moderation: {enabled: true, provider: local}
  min_words: 50
"""
PROMPTS = {
    "title.j2": "Write one short title for a blog post about: {{ topic }}",
    "outline.j2": 'Plan a blog post titled "{{ title }}" about {{ topic }}. Give an outline.',
    "section.j2": 'You are writing "{{ title }}". Write the section {{ section_index }}/{{ section_count }}: '
                  '"{{ section }}".',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(latency: float, per_token: float, section_words: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PY, str(ROOT / "bench" / "fake_api_server.py"), "--latency", str(latency),
                             "--per-token", str(per_token), "--section-words", str(section_words)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def stop_servers(env: dict[str, str]) -> None:
    """Stop the kept Prefect server and services of the state folder `env` names."""
    subprocess.run([COPYDESK, "server", "stop"], env=env, capture_output=True)
    subprocess.run([COPYDESK, "services", "stop"], env=env, capture_output=True)


def leave_work(work: Path, keep: bool) -> None:
    """Remove the work folder, or say where it is (`--keep`)."""
    if keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def stop_fake(fake: subprocess.Popen) -> None:
    """Stop the fake API: SIGINT, then a kill if it is still there after 10 s (a process started as
    a background job inherits SIGINT ignored)."""
    fake.send_signal(signal.SIGINT)
    try:
        fake.wait(timeout=10)
    except subprocess.TimeoutExpired:
        fake.kill()
        fake.wait()


class Timed(NamedTuple):
    seconds: float
    peak: int  # bytes, the command's own process
    code: int
    stderr: str
    cpu: float  # CPU-s of the command's own process (user + system)


def timed(cmd: list[str], env: dict[str, str]) -> Timed:
    """Wall seconds, peak RSS and CPU of the command's own process, exit code, stderr."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    handle = psutil.Process(proc.pid)
    peak, cpu = 0, 0.0
    while True:
        # wait4 reaps the process and gives its rusage; poll until it has exited
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            break
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    return Timed(seconds, peak, proc.returncode, stderr, cpu)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KEPT = ("languagetool", "prefect-server")


def process_cpu(pid: int) -> float:
    """CPU-s (user + system) of `pid` and its live descendants, from /proc/<pid>/stat."""
    pids = [pid]
    try:
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for one in pids:
        try:
            stat = Path(f"/proc/{one}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def kept_pids(state: Path) -> dict[str, int]:
    """The kept servers' pids by name, from their state records."""
    pids = {}
    for name in KEPT:
        record = state / f"{name}.json"
        if record.exists():
            pids[name] = json.loads(record.read_text())["pid"]
    return pids


def cpu_snapshot(state: Path, fake_pid: int) -> dict[str, float]:
    return {**{name: process_cpu(pid) for name, pid in kept_pids(state).items()}, "fake-api": process_cpu(fake_pid)}


def wait_for_warmup(state: Path, limit: float = 300.0) -> str:
    """Wait until the kept LanguageTool's warm-up is done and the server idle: what it took."""
    started = time.perf_counter()
    pid = kept_pids(state).get("languagetool")
    if pid is None:
        return "no LanguageTool kept"
    log_path = json.loads((state / "languagetool.json").read_text()).get("log_path")
    warm_log = Path(log_path).with_name("languagetool-warmup.log") if log_path else None
    cpu0 = process_cpu(pid)
    while time.perf_counter() - started < limit:
        done = warm_log is None or not warm_log.exists() or "warm-up done" in warm_log.read_text(errors="replace")
        before = process_cpu(pid)
        time.sleep(2.0)
        if done and process_cpu(pid) - before < 0.05 * 2.0:
            break
    return (f"waited for LanguageTool's warm-up {time.perf_counter() - started:.0f} s "
            f"({process_cpu(pid) - cpu0:.1f} CPU-s)")


def write_spec(work: Path, which: str) -> Path:
    if which == "bench":
        (work / "prompts").mkdir(exist_ok=True)
        for name, text in PROMPTS.items():
            (work / "prompts" / name).write_text(text)
        (work / "bench.yaml").write_text(BENCH_SPEC)
        return work / "bench.yaml"
    # The default spec as a user has it: pipelines/tech-blog.yaml next to a copy of prompts/.
    shutil.copytree(ROOT / "prompts", work / "prompts", dirs_exist_ok=True)
    (work / "pipelines").mkdir(exist_ok=True)
    spec = yaml.safe_load((ROOT / "pipelines" / "tech-blog.yaml").read_text(encoding="utf-8"))
    spec.setdefault("budget", {})["max_total_tokens"] = 100_000_000  # the bench measures speed, not the budget
    path = work / "pipelines" / "tech-blog.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def servers_rss(state: Path) -> str:
    parts = []
    for name in ("prefect-server", "languagetool"):
        record = state / f"{name}.json"
        if not record.exists():
            continue
        pid = json.loads(record.read_text())["pid"]
        try:
            proc = psutil.Process(pid)
            rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
            parts.append(f"{name} {rss / 2**20:.0f} MB")
        except psutil.Error:
            pass
    return ", ".join(parts) or "none kept"


def first_commands(args: argparse.Namespace, spec: Path, setup: str, home: Path, env: dict[str, str],
                   topic_file: Path) -> str:
    """What comes before the measured commands (`copydesk server start`, the first run, the
    warm-up); timed and reported apart."""
    first = ""
    if setup == "server":
        done = timed([COPYDESK, "server", "start", "--port", "0"], env)
        assert done.code == 0, "copydesk server start failed"
        first = f"server start {done.seconds:.1f} s; "
    done = timed([COPYDESK, "run", str(spec), "-t", "first run", "--concurrency", str(args.concurrency),
                  "--out", str(home / "first")], env)
    assert done.code == 0, "the first copydesk run failed"
    first += f"first run (1 article) {done.seconds:.1f} s"
    if args.warmup == "wait":
        first += "; " + wait_for_warmup(home / "state")
    elif args.warmup == "run":
        done = timed([COPYDESK, "run", str(spec), "--topics-file", str(topic_file), "--concurrency",
                      str(args.concurrency), "--out", str(home / "warm-up")], env)
        assert done.code == 0, "the warm-up run failed"
        first += f"; unmeasured warm-up run ({args.warmup_articles} articles) {done.seconds:.1f} s"
    return first


def measure_row(args: argparse.Namespace, spec: Path, url: str, fake_pid: int, home: Path, env: dict[str, str],
                size: int) -> tuple[list[float], list[float], list[int], list[dict[str, float]]]:
    """`--repeat` baseline/copydesk pairs: seconds of each, copydesk's peak RSS, and the CPU-s
    per article of each process during each copydesk command (and of the baseline script)."""
    topics = [f"topic {i}: making software {i} a little better" for i in range(size)]
    topic_file = home / f"topics-{size}.txt"
    topic_file.write_text("\n".join(topics), encoding="utf-8")
    base, ours, peaks, cpus = [], [], [], []
    for r in range(args.repeat):
        out = home / f"out-{size}-{r}"
        moderate = ["--moderate"] if args.moderation == "api" else []
        done = timed([PY, str(ROOT / "bench" / "baseline.py"), *moderate, url, str(args.concurrency),
                      str(out / "baseline"), *topics], env)
        assert done.code == 0, "baseline failed"
        base.append(done.seconds)
        baseline_cpu = done.cpu
        before = cpu_snapshot(home / "state", fake_pid)
        done = timed([COPYDESK, "run", str(spec), "--topics-file", str(topic_file), "--concurrency",
                      str(args.concurrency), "--out", str(out / "copydesk")], env)
        after = cpu_snapshot(home / "state", fake_pid)
        assert done.code == 0, f"copydesk run exited {done.code}"
        ours.append(done.seconds)
        peaks.append(done.peak)
        cpu = {"copydesk": done.cpu, **{name: after[name] - before.get(name, 0.0) for name in after}}
        cpus.append({name: value / size for name, value in {**cpu, "baseline script": baseline_cpu}.items()})
    return base, ours, peaks, cpus


def cpu_line(cpus: list[dict[str, float]]) -> str:
    names = ["copydesk", "languagetool", "prefect-server", "fake-api", "baseline script"]
    parts = [f"{name} {statistics.median(c.get(name, 0.0) for c in cpus):.3f}" for name in names
             if any(name in c for c in cpus)]
    servers = sum(statistics.median(c.get(n, 0.0) for c in cpus) for n in ("copydesk", *KEPT))
    return f"  CPU-s per article (median of {len(cpus)}): " + ", ".join(parts) + f"; copydesk + servers {servers:.3f}"


@contextlib.contextmanager
def neighbours(count: int) -> Iterator[None]:
    """`count` CPU-bound processes (a busy loop each) for the duration of the block."""
    procs = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=["long", "short"])
    parser.add_argument("--setups", nargs="+", choices=["default", "server", "temporary"],
                        default=["default", "server"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--per-token", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=2, help="baseline/copydesk pairs per row (median)")
    parser.add_argument("--spec", choices=["default", "bench"], default="default")
    parser.add_argument("--warmup", choices=["wait", "run", "none"], default="wait",
                        help="before the measured commands: wait for LanguageTool's warm-up, an unmeasured run, or neither")
    parser.add_argument("--warmup-articles", type=int, default=100, help="the unmeasured run's size (--warmup run)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, outputs)")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound neighbour processes beside the measured pairs")
    parser.add_argument("--moderation", choices=["local", "api"], default="local",
                        help="api: an API key is set, so the spec's provider auto moderates through the fake API")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="copydesk-bench-"))
    spec = write_spec(work, args.spec)
    print(f"fake API {args.latency:g} s + {args.per_token * 1000:g} ms/token; concurrency {args.concurrency}; "
          f"spec {args.spec}; warm-up {args.warmup}; moderation {args.moderation}; busy neighbours {args.busy}; "
          f"load average {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    print(f"{'profile':<6} {'setup':<9} {'articles':>8} {'baseline s':>10} {'copydesk s':>10} {'ratio':>6} "
          f"{'all ratios':<18} {'peak MB':>7}  first command / servers")
    envs: list[dict[str, str]] = []
    try:
        for profile in args.profiles:
            fake, url = start_fake(args.latency, args.per_token, PROFILES[profile])
            try:
                for setup in args.setups:
                    home = work / f"{profile}-{setup}"
                    env = {k: v for k, v in os.environ.items()
                           if not k.startswith(("OPENAI_", "PREFECT_API_URL", "COPYDESK_", "PREFECT_HOME"))}
                    env.update(OPENAI_BASE_URL=url, PREFECT_HOME=str(home / "prefect-home"),
                               COPYDESK_STATE_DIR=str(home / "state"), COPYDESK_OUTPUT_DIR=str(home / "outputs"),
                               COPYDESK_KEEP_SERVERS="false" if setup == "temporary" else "true")
                    if args.moderation == "api":
                        env["OPENAI_API_KEY"] = "bench-dummy-key"  # the fake API checks no key
                    envs.append(env)
                    home.mkdir(parents=True, exist_ok=True)
                    warm_topics = home / "topics-warm-up.txt"
                    warm_topics.write_text("\n".join(f"warm-up topic {i}: checking prose {i} with care"
                                                      for i in range(args.warmup_articles)), encoding="utf-8")
                    first = first_commands(args, spec, setup, home, env, warm_topics)
                    for size in args.sizes:
                        with neighbours(args.busy):
                            base, ours, peaks, cpus = measure_row(args, spec, url, fake.pid, home, env, size)
                        b, c = statistics.median(base), statistics.median(ours)
                        ratios = " ".join(f"{o / x:.3f}" for o, x in zip(ours, base))
                        print(f"{profile:<6} {setup:<9} {size:>8} {b:>10.2f} {c:>10.2f} {c / b:>6.3f} {ratios:<18} "
                              f"{max(peaks) / 2**20:>7.0f}  {first}; {servers_rss(home / 'state')}", flush=True)
                        print(cpu_line(cpus), flush=True)
                        first = ""
                    # this setup's servers stop before the next setup starts its own
                    stop_servers(env)
            finally:
                stop_fake(fake)
    finally:
        for env in envs:
            stop_servers(env)
        leave_work(work, args.keep)


if __name__ == "__main__":
    main()
