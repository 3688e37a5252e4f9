"""A server (or a proxy) that echoes the request's headers into its error answers, in every
encoding, through the real `copydesk run` in realtime and batch mode: no form of the key or of
the base URL's `user:password` reaches any file of the run, the terminal, the `-v` log, the
Prefect flow run (its logs, state, parameters) or its artifacts (issue 20, findings 2 and 3)."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import run_cli
from fake_batch import FakeBatchAPI
from fake_openai import FakeOpenAI

KEY = "sk-proj-Sec/ret+Key=0123456789abcdXY"
USER, PASSWORD = "alice", "pw-Pass/Word+9f3k="


def _base64_pieces(secret: str) -> list[str]:
    """The base64 text of `secret` at each of its 3 offsets inside a longer encoded string."""
    data = secret.encode()
    pieces = []
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            pieces.append(encode(b"\0" * offset + data).decode()[skip:(offset + len(data)) * 8 // 6])
    return pieces


def _forms(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret, safe="").lower(),
            urllib.parse.quote(secret), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1],
            *_base64_pieces(secret)]


FORBIDDEN = sorted({
    *_forms(KEY), *_forms(KEY[3:]), *_forms(KEY[8:]),  # the key, without "sk-" and without "sk-proj-"
    *_forms(PASSWORD), *_forms(f"{USER}:{PASSWORD}"),
    *_forms(base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()),  # the Basic value (echoed in base64 too)
})


def _assert_clean(where: str, text: str) -> None:
    leaked = [form for form in FORBIDDEN if form in text]
    assert not leaked, f"{where}: {leaked} leaked"


def _run_files(out: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()}


def _prefect_records(api_url: str, since: str) -> dict[str, str]:
    """The flow runs started since `since` (state, parameters), their logs and their artifacts,
    read back through the Prefect server's API."""
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"flow_runs": {"start_time": {"after_": since}}},
                      timeout=30).json()
    assert runs, "the run left no flow run"
    ids = [run["id"] for run in runs]
    logs: list[dict] = []
    while True:
        page = httpx.post(f"{api_url}/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}, "limit": 200,
                                                          "offset": len(logs)}, timeout=30).json()
        logs += page
        if len(page) < 200:
            break
    artifacts = httpx.post(f"{api_url}/artifacts/filter",
                           json={"artifacts": {"flow_run_id": {"any_": ids}}}, timeout=30).json()
    return {"flow runs": json.dumps(runs), "logs": "\n".join(entry["message"] for entry in logs),
            "artifacts": json.dumps(artifacts, ensure_ascii=False), "log count": str(len(logs))}


def _check_everything(result, out: Path, api_url: str, since: str) -> dict[str, str]:
    files = _run_files(out)
    assert any(name.endswith("articles.csv") for name in files)
    for name, text in files.items():
        _assert_clean(name, text)
    _assert_clean("stdout", result.stdout)
    _assert_clean("stderr (the -v log)", result.stderr)
    prefect = _prefect_records(api_url, since)
    for name, text in prefect.items():
        _assert_clean(f"Prefect {name}", text)
    return {**files, **{f"prefect {k}": v for k, v in prefect.items()}}


def _since() -> str:
    time.sleep(0.01)
    return datetime.now(UTC).isoformat()


@pytest.mark.parametrize("with_key", [True, False], ids=["bearer", "basic"])
def test_realtime_headers_echoed_in_every_encoding_leave_no_secret(basic_spec, cli_env, tmp_path, with_key):
    """With a key the proxy echoes `Authorization: Bearer <key>`; without one, the base URL's
    userinfo is sent as `Authorization: Basic base64(user:password)` and echoed."""
    with FakeOpenAI(fault_rate={"echo_headers": 1.0}) as fake:
        host = fake.url.removeprefix("http://")
        env = {**cli_env, "OPENAI_BASE_URL": f"http://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@{host}"}
        if with_key:
            env["OPENAI_API_KEY"] = KEY
        else:
            env.pop("OPENAI_API_KEY")
        out, since = tmp_path / "out", _since()
        result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "Retries", "-v"], env)
        sent = fake.state.headers[0]["Authorization"]
    expected = f"Bearer {KEY}" if with_key else "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert sent == expected  # the server really got the secret, and quoted it back in every encoding
    assert result.returncode == 4, result.stderr  # refused credentials
    everything = _check_everything(result, out, env["PREFECT_API_URL"], since)
    csv = next(text for name, text in everything.items() if name.endswith("articles.csv"))
    assert "refused" in csv and "[redacted]" in csv  # the echo is there, cleaned
    assert "refused" in everything["prefect logs"]


def test_batch_lines_echoing_headers_leave_no_secret(basic_spec, cli_env, tmp_path):
    with FakeBatchAPI() as fake:
        fake.line_faults = {"-title-": ["echo"] * 10}
        host = fake.url.removeprefix("http://")
        env = {**cli_env, "OPENAI_API_KEY": KEY, "COPYDESK_BATCH_POLL_SECONDS": "0.1",
               "OPENAI_BASE_URL": f"http://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@{host}/v1"}
        out, since = tmp_path / "out", _since()
        result = run_cli(["run", str(basic_spec), "--out", str(out), "--mode", "batch", "--topic", "Retries",
                          "--topic", "Caching", "-v"], env)
        assert fake.create_headers["Authorization"] == f"Bearer {KEY}"
    assert result.returncode in (0, 1), result.stderr
    everything = _check_everything(result, out, env["PREFECT_API_URL"], since)
    csv = next(text for name, text in everything.items() if name.endswith("articles.csv"))
    held = [text for name, text in everything.items() if "/held/" in name]
    assert "HTTP 401" in csv and "[redacted]" in csv
    assert held and all("[redacted]" in text for text in held)
    assert "failed" in everything["prefect logs"]
