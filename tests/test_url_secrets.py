"""Secrets in OPENAI_BASE_URL (`user:password@`, `?api-key=`) and in the key's encoded forms
never reach the CSV, summary.json, any other output file or the terminal; a key sent over
plain http to a host other than loopback is warned about. Through the real `copydesk run`."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import httpx
import pandas as pd
from conftest import run_cli
from fake_openai import FakeOpenAI

PASSWORD = "pw-URL-PASSWORD-9f3k"
QUERY_SECRET = "qs-QUERY-SECRET-71xz"
#: No "sk-" prefix, and characters that percent-encoding changes.
KEY = "key/NEVER+PRINT=ME_5512"


def _forms(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            urllib.parse.quote(secret, safe="").lower()]


def _everything(result, out: Path) -> str:
    files = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file())
    return "\n".join([result.stdout, result.stderr, files])


def _assert_clean(text: str) -> None:
    for secret in (PASSWORD, QUERY_SECRET, KEY):
        for form in _forms(secret):
            assert form not in text, f"{form!r} leaked"


def test_secrets_in_the_base_url_and_encoded_key_stay_out_of_every_output(basic_spec, cli_env, tmp_path):
    with FakeOpenAI(fault_rate={"echo": 1.0}) as fake:
        host = fake.url.removeprefix("http://")
        env = {**cli_env, "OPENAI_API_KEY": KEY,
               "OPENAI_BASE_URL": f"http://alice:{PASSWORD}@{host}?api-key={QUERY_SECRET}"}
        out = tmp_path / "out"
        result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "Retries"], env)
        # The server really received the key and the query parameter, and quoted them back.
        assert fake.state.headers and fake.state.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert result.returncode in (0, 1), result.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    (reason,) = frame["reasons"]
    assert "refused" in reason and "[redacted]" in reason  # the server's echo is there, cleaned
    assert (run_dir / "summary.json").is_file()
    _assert_clean(_everything(result, out))
    assert "plain http" not in result.stderr  # loopback: no warning
    logs = _prefect_logs(env["PREFECT_API_URL"])
    assert "refused" in logs  # the run's warnings reached Prefect ...
    _assert_clean(logs)  # ... without a secret


def _prefect_logs(api_url: str) -> str:
    """Every log line the Prefect server holds (the UI shows these)."""
    response = httpx.post(f"{api_url}/logs/filter", json={"limit": 200, "sort": "TIMESTAMP_DESC"}, trust_env=False)
    response.raise_for_status()
    return "\n".join(entry["message"] for entry in response.json())


def test_plain_http_to_another_host_is_warned_once_and_leaks_nothing(basic_spec, cli_env, tmp_path):
    # 192.0.2.1 (TEST-NET-1) is never routed: every call fails to connect, quickly.
    env = {**cli_env, "OPENAI_API_KEY": KEY, "COPYDESK_CONNECT_TIMEOUT": "0.5", "COPYDESK_MAX_ATTEMPTS": "2",
           "OPENAI_BASE_URL": f"http://bob:{PASSWORD}@192.0.2.1:9/v1?api-key={QUERY_SECRET}"}
    out = tmp_path / "out"
    result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "Retries"], env)
    assert result.stderr.count("plain http") == 1, result.stderr
    assert "http://192.0.2.1:9/v1" in result.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert "192.0.2.1:9/v1" in frame["reasons"][0]
    _assert_clean(_everything(result, out))
