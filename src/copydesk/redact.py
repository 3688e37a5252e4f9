"""The one redaction of secrets, used at every sink: files, logs, artifacts, metrics, exceptions.

    redact(text)        what an error text, a log record, an artifact or a metric label may say:
                        URLs lose userinfo and query; every known secret in every encoding; every
                        `Authorization:`/`api-key:` header value; `Bearer`/`Basic` credentials;
                        OpenAI-style `sk-...` tokens
    redact_known(text)  only the known secrets, in every encoding (the run's files: model
                        output may discuss headers and keys, it may never hold ours)
    register(...)       a secret the process knows beyond the environment (an `ApiEndpoint`
                        registers its key and its base URL's credentials)
    install_log_redaction()  every log record of the process redacted where it is made (its
                        message, arguments and traceback), whatever handler sends it on
                        (the console, Prefect's API log handler, a file)

Known secrets: OPENAI_API_KEY (also without its `sk-`/`sk-proj-` prefix), the password,
`user:password` (and its Basic value, base64(user:password)) and query values of OPENAI_BASE_URL, PREFECT_API_URL and
COPYDESK_LANGUAGETOOL_URL, PREFECT_API_KEY, PREFECT_API_AUTH_STRING (and its password),
the database URL's password, plus whatever was registered. Their forms: raw, percent-encoded
(either case), plus-encoded, JSON-escaped, and base64 (standard and URL-safe, also percent-encoded)
at each of the 3 alignments it takes inside a longer base64 string such as
`Basic base64(user:password)`; the whole base64 word holding such a piece is redacted.
Values shorter than `MIN_SECRET` characters are not treated as secrets.

This module is a leaf: the standard library only (copydesk.errors redacts every message with it).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable

REDACTED = "[redacted]"
#: Shorter values are not secrets (too likely to appear anyway).
MIN_SECRET = 6
#: Base64 pieces shorter than this are not matched (false positives).
MIN_BASE64_PIECE = 8

#: Environment variables whose whole value is a secret.
SECRET_VARIABLES = ("OPENAI_API_KEY", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")
#: Environment variables holding a URL whose userinfo and query values are secrets.
URL_VARIABLES = ("OPENAI_BASE_URL", "PREFECT_API_URL", "COPYDESK_LANGUAGETOOL_URL",
                 "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")

#: A URL in free text, with its userinfo and query string as groups.
URL_IN_TEXT = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@?#]*@)?(?P<rest>[^\s?#]*)"
    r"(?P<query>\?[^\s#]*)?(?P<fragment>#\S*)?"
)
_SEP = r"(?:\s|%20|\+)"
_SCHEMES = r"(?:bearer|basic|token|digest|apikey)"
_HEADER = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]key)"
    r"(?P<sep>[\"']?\s*(?::|=|%3A|%3D)(?:\s|%20|\+|[\"'])*)"
    r"(?!(?:" + _SCHEMES + _SEP + r"+)?\[redacted\])"
    r"(?:(?P<scheme>" + _SCHEMES + r")" + _SEP + r"+)?"
    r"(?P<value>[^\s\"',;&}\]]+)"
)
_CREDENTIAL = re.compile(r"\b(?P<scheme>Bearer|Basic)(?P<sep>" + _SEP + r"+)(?!\[redacted\])"
                         r"(?P<value>[A-Za-z0-9._~+/%-]{8,}=*(?:%3D)*)")
#: OpenAI echoes keys as "sk-abc1****wxyz"; any such token is cut.
_SK = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-*.]{4,}")
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=%")

_registered: set[str] = set()
_lock = threading.Lock()


# ------------------------------------------------------------------------------ what is secret


def register(*secrets: str | None) -> None:
    """Secrets this process knows beyond the environment (e.g. an `ApiEndpoint`'s key)."""
    with _lock:
        _registered.update(s for s in secrets if s)


def register_url(url: str | None) -> None:
    """The password, `user:password` and query values of `url`."""
    register(*url_secrets(url))


def url_secrets(url: str | None) -> set[str]:
    """The secrets a URL carries: its password, `user:password` (raw and as written) and query values."""
    if not url:
        return set()
    try:
        parts = urllib.parse.urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return set()
    found: set[str] = set()
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if password:
        pair = f"{urllib.parse.unquote(username or '')}:{urllib.parse.unquote(password)}"
        found |= {password, urllib.parse.unquote(password), userinfo, pair, basic_value(pair)}
    for _name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
        found.add(value)
    return found


def basic_value(pair: str) -> str:
    """The value of `Authorization: Basic ...` for `user:password` (itself a secret, also in base64)."""
    return base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _environment() -> tuple[str, ...]:
    return tuple(os.environ.get(name, "") for name in (*SECRET_VARIABLES, *URL_VARIABLES))


def known_secrets() -> set[str]:
    """Every secret value the process knows now (raw), long enough to be one."""
    values = _environment()
    found: set[str] = set()
    for value in values[: len(SECRET_VARIABLES)]:
        if value:
            found.add(value)
            if ":" in value:  # an auth string user:password, sent as Basic base64(user:password)
                found |= {value.split(":", 1)[1], basic_value(value)}
    for value in values[len(SECRET_VARIABLES):]:
        found |= url_secrets(value)
    with _lock:
        found |= _registered
    more = set()
    for value in found:
        if match := re.match(r"sk-(?:(?:proj|svcacct|admin)-)?", value):
            more |= {value[3:], value[match.end():]}
    return {s for s in found | more if len(s) >= MIN_SECRET}


def encoded_forms(secret: str) -> set[str]:
    """The forms a secret takes in URLs, form bodies and JSON."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def base64_pieces(secret: str) -> set[str]:
    """The base64 text that `secret` alone determines, at each of its 3 alignments inside a
    longer encoded string (standard and URL-safe alphabets, also percent-encoded)."""
    data = secret.encode("utf-8")
    pieces: set[str] = set()
    for offset, start in ((0, 0), (1, 2), (2, 3)):
        total = offset + len(data)
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            piece = encode(b"\0" * offset + data).decode("ascii")[start: total * 8 // 6]
            if len(piece) >= MIN_BASE64_PIECE:
                pieces |= {piece, urllib.parse.quote(piece, safe="")}
    return pieces


@functools.lru_cache(maxsize=16)
def _patterns(secrets: frozenset[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(the encoded forms, the base64 words holding a piece) of `secrets`, longest first."""
    forms: set[str] = set()
    pieces: set[str] = set()
    for secret in secrets:
        forms |= {f for f in encoded_forms(secret) if f}
        pieces |= base64_pieces(secret)

    def alternation(values: Iterable[str]) -> str:
        return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))

    plain = re.compile(alternation(forms), re.IGNORECASE) if forms else None
    encoded = re.compile(alternation(pieces)) if pieces else None
    return plain, encoded


# ------------------------------------------------------------------------------ redaction


def redact_known(text: str) -> str:
    """`text` without any known secret in any of its forms (see the module docstring)."""
    secrets = known_secrets()
    if not secrets or not text:
        return text
    plain, encoded = _patterns(frozenset(secrets))
    if encoded is not None:
        text = _redact_words(encoded, text)
    if plain is not None:
        text = plain.sub(REDACTED, text)
    return text


def _redact_words(pattern: re.Pattern[str], text: str) -> str:
    """Every base64 word (a run of base64 and percent characters) holding a match, redacted whole."""
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(text):
        start, end = match.start(), match.end()
        if spans and start < spans[-1][1]:
            continue
        while start > 0 and text[start - 1] in _BASE64_CHARS:
            start -= 1
        while end < len(text) and text[end] in _BASE64_CHARS:
            end += 1
        spans.append((start, end))
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], REDACTED]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def strip_url_secrets(text: str) -> str:
    """`text` with the userinfo, query string and fragment of every URL in it removed."""
    return URL_IN_TEXT.sub(lambda m: m.group("scheme") + m.group("rest"), text)


def redact(text: str) -> str:
    """`text` fit for a message, a log, an artifact or a metric label (see the module docstring).
    Idempotent; apply it before a text is shortened, so no part of a secret survives a cut."""
    if not text:
        return text
    text = redact_known(strip_url_secrets(text))
    text = _HEADER.sub(_header_value, text)
    text = _CREDENTIAL.sub(_credential, text)
    return _SK.sub(REDACTED, text)


def redact_bytes(data: bytes) -> bytes:
    """`redact_known` for the bytes of a UTF-8 file (bytes that are not UTF-8 are kept as they are)."""
    if not known_secrets():
        return data
    text = data.decode("utf-8", errors="surrogateescape")
    cleaned = redact_known(text)
    return data if cleaned == text else cleaned.encode("utf-8", errors="surrogateescape")


def _header_value(match: re.Match[str]) -> str:
    scheme = f"{match.group('scheme')} " if match.group("scheme") else ""
    return f"{match.group('name')}{match.group('sep')}{scheme}{REDACTED}"


def _credential(match: re.Match[str]) -> str:
    """`Bearer <token>` always (a token has a digit or a symbol), `Basic <value>` when the value
    is base64 of `user:password`: ordinary prose ("Basic troubleshooting") stays."""
    value = urllib.parse.unquote(match.group("value"))
    if match.group("scheme") == "Basic":
        try:
            secret = b":" in base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            secret = False
    else:
        secret = bool(re.search(r"[0-9._~+/=-]", value))
    return f"{match.group('scheme')}{match.group('sep')}{REDACTED}" if secret else match.group(0)


# ------------------------------------------------------------------------------ logs

_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process where it is made: its message (arguments
    applied) and its traceback. Idempotent."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


_FORMATTER = logging.Formatter()


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place (its message with its arguments, its traceback)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format: leave it to logging's own error handling
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
