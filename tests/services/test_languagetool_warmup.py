"""The kept LanguageTool's JIT and its warm-up (copydesk.services.warmup)."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from copydesk.services import warmup
from copydesk.services.languagetool import ONE_RUN_JIT, LanguageToolServer, start_warmup
from copydesk.settings import Settings


class StubLanguageTool:
    """/v2/check on loopback, recording each check; `delays` slow down the checks in turn."""

    def __init__(self, delays: list[float] | None = None) -> None:
        self.checks: list[dict[str, list[str]]] = []
        self.delays = list(delays or [])
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                stub.checks.append(parse_qs(body))
                if stub.delays:
                    time.sleep(stub.delays.pop(0))
                payload = json.dumps({"matches": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = StubLanguageTool()
    yield server
    server.close()


def test_a_kept_server_gets_the_full_jit_and_a_one_run_server_c1_only(tmp_path):
    server = LanguageToolServer(Settings(state_dir=tmp_path, languagetool_url=None))
    assert set(ONE_RUN_JIT) <= set(server.build_command(4321))
    server.kept = True
    command = server.build_command(4321)
    assert not set(ONE_RUN_JIT) & set(command)
    assert "-XX:+UseSerialGC" in command


def test_the_warm_up_checks_its_words_in_chunks_of_prose_and_stops(stub):
    out = io.StringIO()
    checked = warmup.warm(stub.url, words=4_000, seconds=60, out=out)
    assert checked >= 4_000
    assert len(stub.checks) == 3  # chunks of a little over 1,500 words until 4,000 are checked
    texts = [c["text"][0] for c in stub.checks]
    assert all(c["language"] == ["en-US"] for c in stub.checks)
    assert len(set(texts)) == len(texts)  # a new text each time: the server checks, not a cache
    assert all(len(t.split()) >= warmup.CHUNK_WORDS for t in texts)
    assert out.getvalue().splitlines()[-1] == f"warm-up done: {checked} words"


def test_the_warm_up_pauses_when_a_check_is_slow():
    server = StubLanguageTool(delays=[0.2, 0.2, 0.7, 0.2])  # the third check: a run is using the server
    pauses: list[float] = []
    try:
        warmup.warm(server.url, words=4 * warmup.CHUNK_WORDS, seconds=60, out=io.StringIO(), sleep=pauses.append)
    finally:
        server.close()
    assert pauses == [warmup.BUSY_PAUSE]


def test_the_warm_up_stops_when_the_server_goes_away():
    out = io.StringIO()
    assert warmup.warm("http://127.0.0.1:9", words=10_000, seconds=30, out=out) == 0
    assert "warm-up stopped" in out.getvalue()


def test_start_warmup_runs_detached_and_logs(stub, tmp_path):
    log = tmp_path / "logs" / "languagetool-warmup.log"
    proc = start_warmup(stub.url, log, words=3_000)
    assert proc.wait(60) == 0
    lines = log.read_text().splitlines()
    assert lines[-1].startswith("warm-up done: ") and int(lines[-1].split()[-2]) >= 3_000
    assert len(stub.checks) >= 2


def test_no_warm_up_when_it_is_turned_off(tmp_path, monkeypatch):
    started: list[str] = []
    monkeypatch.setattr("copydesk.services.languagetool.start_warmup", lambda url, log, words: started.append(url))
    monkeypatch.setattr("copydesk.services.process.ManagedServer.start_background",
                        lambda self, timeout=None, extra=None: (type("S", (), {"url": "u", "log_path": str(tmp_path / "x.log")})(), True))
    LanguageToolServer(Settings(state_dir=tmp_path, languagetool_url=None, languagetool_warmup_words=0)).start_background()
    assert started == []
    LanguageToolServer(Settings(state_dir=tmp_path, languagetool_url=None)).start_background()
    assert started == ["u"]
