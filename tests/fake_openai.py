"""A fake OpenAI-compatible server over real HTTP on loopback, for flow tests and fault injection.

It answers `/v1/chat/completions` and `/v1/models` like the real API, counts
the tokens it bills (its own `usage`), records every request it received, and
injects faults on demand: 429 (with Retry-After), 500, 401, 404, slow answers,
dropped connections, malformed JSON, a missing `usage`.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


SENTENCES = [
    "Start with the smallest example that still shows the problem.",
    "Most teams discover this only after the first outage.",
    "A checklist keeps the review short and honest.",
    "Measure before you change anything, and write the number down.",
    "The fix is usually one line, but finding it takes an afternoon.",
    "Readers who skip this step pay for it later.",
    "Logs tell you what happened; metrics tell you how often.",
    "Keep the configuration in version control next to the code.",
    "A failing test is the cheapest documentation you will ever write.",
    "Rename things until the code reads like the sentence you meant.",
    "Automate the boring parts first, because people forget them.",
    "When two options look equal, pick the one that is easier to undo.",
    "Small pull requests get better reviews than large ones.",
    "Write the error message for the person who will read it at night.",
    "Defaults matter more than options that nobody changes.",
    "Profile the slow path instead of guessing where the time goes.",
    "Document the decision, not only the result.",
    "Delete code that nobody calls, after checking twice.",
    "Pin your dependencies and upgrade them on purpose.",
    "Every retry needs a limit and a reason.",
    "Cache what is expensive and cheap to invalidate.",
    "Share the runbook before you need it.",
    "Ask what the user was trying to do, not only what broke.",
    "Ship the boring version first and learn from it.",
    "Schedule the cleanup, or it will never happen.",
    "Plain words beat clever ones in technical writing.",
    "Each service should own its data and its mistakes.",
    "A dashboard nobody looks at is decoration.",
    "Review the alert rules as carefully as the code.",
    "Good names make comments less necessary.",
]


def default_reply(body: dict[str, Any]) -> str:
    """Title, outline or section, told apart by the prompt."""
    prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
    low = prompt.lower()
    if "outline" in low and "section" not in low.split("outline")[0][-40:] and "write the section" not in low:
        return "1. Why it matters\n2. How it works\n3. Common mistakes\n4. Next steps"
    if "title" in low and "write the section" not in low:
        return '"A Practical Guide"'
    section = re.search(r"section (\d+)/(\d+): (.+?)\.?$", prompt, re.MULTILINE | re.IGNORECASE)
    index = int(section.group(1)) if section else 1
    name = section.group(3) if section else "this part"
    picks = SENTENCES[(index - 1) * 5 % len(SENTENCES):][:5]
    return f"Here we look at {name.lower()}. " + " ".join(picks)


def echo_headers(path: str, headers: dict[str, str]) -> str:
    """What a careless proxy says when it refuses a request: the request line and every header,
    raw, percent- and plus-encoded, JSON-encoded, and in base64 at 3 alignments (after 0, 1
    and 2 bytes of prefix) so that a secret's base64 appears at each of its 3 offsets."""
    block = "\n".join(f"{name}: {value}" for name, value in headers.items())
    raw = block.encode()
    return "\n".join([
        f"refused {path}",
        *(f"b64/{n}: " + base64.b64encode(b"x" * n + raw).decode() for n in range(3)),
        *(f"b64url/{n}: " + base64.urlsafe_b64encode(b"x" * n + raw).decode() for n in range(3)),
        "percent: " + urllib.parse.quote(block, safe=""),
        "plus: " + urllib.parse.quote_plus(block),
        "json: " + json.dumps(headers), block,
    ])


@dataclass
class Fault:
    kind: str  # "429", "500", "401", "403", "404", "400", "echo", "echo_headers", "timeout", "drop", "malformed",
    # "nousage", "huge" (a 200 whose content is `huge_bytes` long), "deep" (a 200 nested `deep_levels` deep)
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    faults: list[Fault] = field(default_factory=list)


def deep_json(levels: int) -> bytes:
    """A chat completion whose `usage` is nested `levels` lists deep."""
    return (b'{"id": "chatcmpl-deep", "choices": [{"message": {"content": "deep"}}], "usage": '
            + b"[" * levels + b"]" * levels + b"}")


class FakeOpenAI:
    #: The size of a "huge" fault's content and the nesting of a "deep" fault's answer.
    huge_bytes = 3_000_000
    deep_levels = 100_000

    def __init__(
        self,
        *,
        reply: Callable[[dict[str, Any]], str] = default_reply,
        latency: float = 0.0,
        per_token_latency: float = 0.0,
        fault_rate: dict[str, float] | None = None,
        randomize_usage: bool = False,
        models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o"),
        flag_words: tuple[str, ...] = ("kill you", "idiot"),
        moderation_endpoint: bool = True,
        seed: int = 7,
        response_formats: tuple[str, ...] | None = None,
        refusal_status: int = 400,
    ) -> None:
        self.reply = reply
        self.latency = latency
        self.per_token_latency = per_token_latency
        self.fault_rate = fault_rate or {}
        self.randomize_usage = randomize_usage
        self.models = models
        self.flag_words = flag_words
        self.moderation_endpoint = moderation_endpoint
        #: `response_format` types this server takes (None: it ignores the field, as many do); one it
        #: does not take is refused with HTTP 400; a json one it takes turns a numbered outline into
        #: `{"headings": [...]}`.
        self.response_formats = response_formats
        #: 400 (OpenAI's way), or 500 with a pydantic validation error (llama-cpp-python 0.3's way).
        self.refusal_status = refusal_status
        self.moderation_requests: list[dict[str, Any]] = []
        self.state = FakeState()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if fake._extra_get(self):
                    return
                if self.path.rstrip("/").endswith("/models"):
                    fake._send(self, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
                else:
                    fake._send(self, 404, {"error": {"message": "not found"}})

            def do_DELETE(self) -> None:  # noqa: N802
                if not fake._extra_delete(self):
                    fake._send(self, 404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if fake._extra_post(self, raw):
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    fake._send(self, 400, {"error": {"message": "invalid JSON"}})
                    return
                if self.path.rstrip("/").endswith("/moderations"):
                    if fake.moderation_endpoint:
                        fake._moderate(self, body)
                    else:  # like vLLM, Ollama or llama.cpp: chat completions only
                        fake._send(self, 404, {"detail": "Not Found"})
                else:
                    fake._chat(self, body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the default 5 resets connections under load

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    return  # a client that went away (a killed process): nothing to report
                super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _extra_get(self, handler: BaseHTTPRequestHandler) -> bool:
        """A subclass's own GET routes (tests/fake_batch.py); True when it answered."""
        return False

    def _extra_delete(self, handler: BaseHTTPRequestHandler) -> bool:
        """A subclass's own DELETE routes (tests/fake_batch.py); True when it answered."""
        return False

    def _extra_post(self, handler: BaseHTTPRequestHandler, raw: bytes) -> bool:
        """A subclass's own POST routes (tests/fake_batch.py); True when it answered."""
        return False

    def inject(self, *faults: Fault | str) -> None:
        with self._lock:
            self.state.faults.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    @property
    def total_tokens(self) -> int:
        return self.state.prompt_tokens + self.state.completion_tokens

    # -- serving --------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self.state.faults:
                return self.state.faults.pop(0)
            for kind, rate in self.fault_rate.items():
                if self._random.random() < rate:
                    return Fault(kind, retry_after="0")
        return None

    def reply_with_usage(self, body: dict[str, Any]) -> tuple[str, str, int, int]:
        """The reply to a chat request cut at its max_tokens: text, finish_reason, prompt and
        completion tokens (a word counts as a token). Under a json `response_format` this server
        takes, a numbered outline is answered as `{"headings": [...]}`."""
        text = self.reply(body)
        form = body.get("response_format")
        if form is not None and self.response_formats is not None and str(form.get("type", "")).startswith("json"):
            items = re.findall(r"^\s*\d+[.)]\s*(.+)$", text, re.MULTILINE)
            if items:
                text = json.dumps({"headings": items})
        words = _words(text)
        max_tokens = int(body.get("max_tokens") or 10_000)
        finish = "stop"
        if len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
            text = " ".join(words)
        prompt_tokens = sum(len(_words(m.get("content", ""))) + 4 for m in body.get("messages", [])) + 3
        return text, finish, prompt_tokens, len(words)

    def _moderate(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        with self._lock:
            self.moderation_requests.append(body)
        categories = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                      "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                      "sexual/minors", "violence", "violence/graphic"]
        results = []
        for text in inputs:
            hit = any(word in str(text).lower() for word in self.flag_words)
            results.append({
                "flagged": hit,
                "categories": {c: hit and c in ("harassment", "violence") for c in categories},
                "category_scores": {c: (0.97 if hit and c in ("harassment", "violence") else 0.001) for c in categories},
            })
        self._send(handler, 200, {"id": "modr-fake", "model": body.get("model", "omni-moderation-latest"),
                                  "results": results})

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.state.requests.append(body)
            self.state.headers.append(dict(handler.headers))
            self.state.in_flight += 1
            self.state.peak_in_flight = max(self.state.peak_in_flight, self.state.in_flight)
        try:
            self._answer(handler, body)
        finally:
            with self._lock:
                self.state.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        fault = self._next_fault()
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            kind = fault.kind
            if kind == "429":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                self._send(handler, 429, {"error": {"message": "Rate limit reached", "type": "requests"}}, headers)
                return
            if kind == "quota":
                self._send(handler, 429, {"error": {"message": "You exceeded your current quota",
                                                    "type": "insufficient_quota", "code": "insufficient_quota"}})
                return
            if kind in ("500", "502", "503"):
                self._send(handler, int(kind), {"error": {"message": "The server had an error"}})
                return
            if kind in ("401", "403"):
                self._send(handler, int(kind), {"error": {"message": "Incorrect API key provided"}})
                return
            if kind == "404":
                self._send(handler, 404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                                    "code": "model_not_found"}})
                return
            if kind == "400":
                self._send(handler, 400, {"error": {"message": "This model's maximum context length is exceeded"}})
                return
            if kind == "echo":  # a careless proxy: quotes the request line and the URL-encoded key back
                auth = urllib.parse.quote(handler.headers.get("Authorization", ""), safe="")
                self._send(handler, 400, {"error": {"message": f"refused {handler.path} (authorization {auth})"}})
                return
            if kind == "echo_headers":  # a proxy that quotes every request header back, in every encoding
                self._send(handler, 401, {"error": {"message": echo_headers(handler.path, dict(handler.headers))}})
                return
            if kind == "drop":
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            if kind == "timeout":
                time.sleep(fault.delay or 5.0)
        form = body.get("response_format")
        if form is not None and self.response_formats is not None and form.get("type") not in self.response_formats:
            if self.refusal_status == 500:
                message = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
                           f"'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': {form.get('type')!r}}}")
                self._send(handler, 500, {"error": {"message": message, "type": "internal_server_error"}})
            else:
                self._send(handler, self.refusal_status, {"error": {
                    "message": f"response_format type {form.get('type')!r} is not supported",
                    "type": "invalid_request_error"}})
            return
        model = body.get("model", "")
        if model not in self.models:
            self._send(handler, 404, {"error": {"message": f"The model `{model}` does not exist", "code": "model_not_found"}})
            return
        text, finish, prompt_tokens, completion_tokens = self.reply_with_usage(body)
        max_tokens = int(body.get("max_tokens") or 10_000)
        if self.randomize_usage:
            completion_tokens = self._random.randint(1, max_tokens)
        delay = self.latency + self.per_token_latency * completion_tokens
        if delay:
            time.sleep(delay)
        with self._lock:
            self.state.prompt_tokens += prompt_tokens
            self.state.completion_tokens += completion_tokens
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        if getattr(self, "cached_share", 0):  # tests/fake_batch.py: prompt caching in usage
            payload["usage"]["prompt_tokens_details"] = {"cached_tokens": int(prompt_tokens * self.cached_share)}
        if fault is not None and fault.kind == "nousage":
            del payload["usage"]
        if fault is not None and fault.kind == "huge":
            payload["choices"][0]["message"]["content"] = "word " * (self.huge_bytes // 5)
        if fault is not None and fault.kind == "deep":
            self._send(handler, 200, None, raw=deep_json(self.deep_levels))
            return
        if fault is not None and fault.kind == "malformed":
            self._send(handler, 200, None, raw=b'{"id": "chatcmpl-fake", "choices": [')
            return
        self._send(handler, 200, payload)
