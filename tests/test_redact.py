"""Unit tests of the pieces: copydesk.redact (every encoding, headers, prose left alone, the
sinks that use it) and copydesk.boundedjson (depth, strings with brackets, line numbers)."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse

import pytest

from copydesk import boundedjson, redact
from copydesk.errors import ApiError
from copydesk.rundir import atomic_write

KEY = "sk-proj-Unit/Test+Key=98765zyxwv"
PASSWORD = "p@ss/w0rd+x="


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://bob:{urllib.parse.quote(PASSWORD, safe='')}@gw.test/v1")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:prefect-auth-secret")


@pytest.mark.parametrize("text", [
    KEY, KEY[3:], KEY[8:], urllib.parse.quote(KEY, safe=""), urllib.parse.quote(KEY, safe="").lower(),
    urllib.parse.quote_plus(KEY), json.dumps({"k": KEY}), PASSWORD, f"bob:{PASSWORD}",
    base64.b64encode(f"bob:{PASSWORD}".encode()).decode(), "prefect-auth-secret",
    base64.b64encode(b"admin:prefect-auth-secret").decode(),
    *(base64.b64encode(b"x" * n + f"Authorization: Bearer {KEY}".encode() + b"yz").decode() for n in range(3)),
    *(base64.urlsafe_b64encode(b"x" * n + KEY.encode()).decode() for n in range(3)),
    urllib.parse.quote(base64.b64encode(b"xx" + KEY.encode()).decode(), safe=""),
])
def test_every_form_of_a_known_secret_is_redacted(text):
    for function in (redact.redact, redact.redact_known):
        cleaned = function(f"before {text} after")
        assert "[redacted]" in cleaned and cleaned.startswith("before ") and cleaned.endswith(" after"), cleaned
        for secret in (KEY[8:], PASSWORD, "prefect-auth-secret"):
            assert secret not in cleaned


@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer abc.def-123456", "Authorization: Bearer [redacted]"),
    ('{"authorization": "Basic dXNlcjpwYXNzd29yZA=="}', '{"authorization": "Basic [redacted]"}'),
    ("proxy said Bearer%20tok_123456789", "proxy said Bearer%20[redacted]"),
    ("x-api-key: 0123456789abcdef", "x-api-key: [redacted]"),
    ("echo sk-abcd****wxyz", "echo [redacted]"),
    ("see https://u:pw@h.test/p?token=abcdef#x", "see https://h.test/p"),
])
def test_unknown_credentials_are_redacted_by_their_shape(text, expected):
    assert redact.redact(text) == expected
    assert redact.redact(expected) == expected  # idempotent


@pytest.mark.parametrize("prose", [
    "Basic troubleshooting steps come first.", "Bearer bonds are a thing of the past.",
    "A risk-free task-based plan.", "Authorization matters.",
])
def test_prose_is_left_alone(prose):
    assert redact.redact(prose) == prose


def test_exceptions_log_records_and_files_are_redacted(tmp_path, caplog):
    assert KEY not in str(ApiError(f"server said Authorization: Bearer {KEY}"))
    redact.install_log_redaction()
    with caplog.at_level(logging.INFO, logger="copydesk.test"):
        logging.getLogger("copydesk.test").info("echo %s", urllib.parse.quote(KEY, safe=""))
        try:
            raise ValueError(KEY)
        except ValueError:
            logging.getLogger("copydesk.test").exception("failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "[redacted]" in text and KEY[8:] not in text
    atomic_write(tmp_path / "a.md", f"text {KEY}")
    atomic_write(tmp_path / "b.csv", f"cell,{base64.b64encode(KEY.encode()).decode()}\r\n".encode())
    for name in ("a.md", "b.csv"):
        content = (tmp_path / name).read_text()
        assert "[redacted]" in content and KEY[8:] not in content


def test_redaction_is_linear_on_large_texts():
    import time

    started = time.perf_counter()
    for text in ("A" * 500_000, "a-" * 250_000, "x://" * 100_000, "Bearer " + "A" * 500_000):
        redact.redact(text)
    assert time.perf_counter() - started < 10


def test_bounded_json_depth():
    assert boundedjson.loads('{"a": [1, {"b": "[[[[[[[[[[[[[[[["}]}') == {"a": [1, {"b": "[" * 16}]}
    assert boundedjson.loads("[" * 64 + "]" * 64) is not None
    with pytest.raises(boundedjson.JsonLimitError, match=r"nested more than 64 levels deep \(line 3\)"):
        boundedjson.loads("{\n\n" + "[" * 65 + "]" * 65 + "}")
    with pytest.raises(ValueError, match="nested"):
        boundedjson.loads(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(boundedjson.JsonLimitError, match="more than the 10 read"):
        boundedjson.loads('"01234567890"', max_bytes=10)
    text = json.dumps({"s": "[" * 1000 + '\\"' + "{" * 1000})  # brackets inside a string, escaped quote
    assert boundedjson.loads(text)["s"].startswith("[[")
