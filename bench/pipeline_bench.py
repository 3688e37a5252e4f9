"""copydesk run against a hand-written asyncio+httpx baseline, side by side in one invocation.

Both make the same calls (title → outline → 5 sections per topic) at the same
concurrency against the same fake API, whose latency is a fixed part plus a
per-token part (default 0.2 s + 10 ms/token, like a real API). Prints wall
times, their ratio, and copydesk's peak memory, for each batch size.

    .venv/bin/python bench/pipeline_bench.py [--sizes 10 100] [--concurrency 32]
        [--prefect server|ephemeral] [--qc none|local] [--repeat 1]

`--prefect server` (default) starts a Prefect server first and points the run at
it, which is the production shape; `ephemeral` lets `copydesk run` start
Prefect's temporary server itself, as a first-time user without a server would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
COPYDESK = str(Path(PY).with_name("copydesk"))

SPEC = """\
name: bench
language: en-US
model: gpt-4o-mini
prompts_dir: prompts
stages:
  title: {{prompt: title.j2, temperature: 0.9, max_tokens: 24}}
  outline: {{prompt: outline.j2, temperature: 0.3, max_tokens: 200, min_sections: 3, max_sections: 6}}
  expansion: {{prompt: section.j2, temperature: 0.7, top_p: 0.9, max_tokens: 400, presence_penalty: 0.6}}
budget: {{max_total_tokens: 100000000}}
concurrency: {concurrency}
qc:
  grammar: {{enabled: {grammar}}}
  moderation: {{enabled: {moderation}, provider: local}}
  min_words: 50
"""
PROMPTS = {
    "title.j2": "Write one short title for a blog post about: {{ topic }}",
    "outline.j2": 'Plan a blog post titled "{{ title }}" about {{ topic }}. Give an outline.',
    "section.j2": 'You are writing "{{ title }}". Write the section {{ section_index }}/{{ section_count }}: '
                  '"{{ section }}".',
}


QC_LABEL = {"none": "off", "local": "local moderation + content checks",
            "full": "grammar (warm LanguageTool) + local moderation + content checks"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(latency: float, per_token: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PY, str(ROOT / "bench" / "fake_api_server.py"), "--latency", str(latency),
                             "--per-token", str(per_token)], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def start_prefect(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    proc = subprocess.Popen([PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("prefect server did not start")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the command's own process, and its exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stderr.read()[-2000:], file=sys.stderr)
    return seconds, peak, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--per-token", type=float, default=0.01)
    parser.add_argument("--prefect", choices=["server", "ephemeral"], default="server")
    parser.add_argument("--qc", choices=["none", "local", "full"], default="local",
                        help="none: no QC; local: local moderation + content checks; full: also grammar "
                             "on a warm LanguageTool")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="copydesk-bench-"))
    (work / "prompts").mkdir()
    for name, text in PROMPTS.items():
        (work / "prompts" / name).write_text(text)
    (work / "bench.yaml").write_text(SPEC.format(concurrency=args.concurrency,
                                                 moderation="false" if args.qc == "none" else "true",
                                                 grammar="true" if args.qc == "full" else "false"))
    fake, url = start_fake(args.latency, args.per_token)
    prefect = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PREFECT_API_URL"))}
    env.update(OPENAI_BASE_URL=url, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_HOME=str(work / "prefect-home"), COPYDESK_LANGUAGETOOL_URL="http://127.0.0.1:9")
    lt_settings = None
    try:
        if args.qc == "full":  # a warm LanguageTool, as `copydesk services start` leaves it
            from copydesk.qc.grammar import GrammarChecker
            from copydesk.services.manager import start_services
            from copydesk.settings import Settings

            lt_settings = Settings(state_dir=work / "state", languagetool_url=None)
            (status,) = start_services(lt_settings, which=("languagetool",))
            with GrammarChecker(status.url, "en-US") as checker:
                checker.check("A warm-up sentence for the grammar checker.")
            env["COPYDESK_LANGUAGETOOL_URL"] = status.url
        if args.prefect == "server":
            prefect, api = start_prefect(work / "prefect-home")
            env["PREFECT_API_URL"] = api
        else:  # warm the temporary server's database once, as any second run would find it
            subprocess.run([COPYDESK, "run", str(work / "bench.yaml"), "-t", "warm-up", "--out", str(work / "o")],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(textwrap.dedent(f"""\
            fake API: {args.latency:g} s + {args.per_token * 1000:g} ms/token; concurrency {args.concurrency};
            Prefect: {args.prefect}; QC: {QC_LABEL[args.qc]}"""))
        print(f"{'articles':>8} {'calls':>6} {'baseline s':>10} {'copydesk s':>10} {'ratio':>6} "
              f"{'copydesk MB':>11} {'MB/article':>10}")
        for size in args.sizes:
            topics = [f"topic {i}: making software {i} a little better" for i in range(size)]
            base_times, cd_times, peaks = [], [], []
            for r in range(args.repeat):
                out = work / f"out-{size}-{r}"
                seconds, _, code = timed([PY, str(ROOT / "bench" / "baseline.py"), url, str(args.concurrency),
                                          str(out / "baseline"), *topics], env)
                assert code == 0, "baseline failed"
                base_times.append(seconds)
                topic_file = work / f"topics-{size}.txt"
                topic_file.write_text("\n".join(topics), encoding="utf-8")
                seconds, peak, code = timed([COPYDESK, "run", str(work / "bench.yaml"), "--topics-file",
                                             str(topic_file), "--out", str(out / "copydesk")], env)
                assert code == 0, f"copydesk run exited {code}"
                cd_times.append(seconds)
                peaks.append(peak)
            b, c, m = statistics.median(base_times), statistics.median(cd_times), max(peaks) / 2**20
            print(f"{size:>8} {size * 7:>6} {b:>10.2f} {c:>10.2f} {c / b:>6.3f} {m:>11.0f} {m / size:>10.2f}",
                  flush=True)
    finally:
        fake.send_signal(signal.SIGINT)
        fake.wait()
        if prefect is not None:
            os.killpg(prefect.pid, signal.SIGTERM)
            prefect.wait()
        if lt_settings is not None:
            from copydesk.services.manager import stop_services

            stop_services(lt_settings, which=("languagetool",))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
