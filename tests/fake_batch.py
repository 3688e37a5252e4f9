"""A fake OpenAI Batch API over real HTTP on loopback (an extension of tests/fake_openai.py).

It follows the published shapes: `POST /v1/files` (multipart, `purpose=batch`),
`GET /v1/files` (the listing; a server without it answers 404 like llama.cpp),
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (list),
`GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`.

A batch moves one state per poll: validating -> in_progress -> finalizing ->
completed (`hold` keeps every batch in_progress until it is cleared). Answers are
made like the chat endpoint's (`reply`, the same word counts for `usage`), plus
`usage.prompt_tokens_details.cached_tokens` when `cached_share` is set. Faults per
line: `line_faults` maps a substring of a `custom_id` to a list of faults consumed
one per batch that carries the line ("error": a line in the error file with an
`error` object; "500"/"400": a line in the error file with that status code; "echo": a 401
line quoting every header of the batch's creation, in every encoding; "huge"/"deep": an output
line `huge_bytes` large or nested `deep_levels` deep). `batch_ids` gives created batches odd ids,
`poll_faults` answers polls with deep or huge JSON; `paths` records every request.

`refuse_uploads` answers every `POST /v1/files` with that (status, message) while
`GET /v1/files` still lists (a gateway without file storage set up). A one-line file whose
line is copydesk's preflight probe (custom_id "copydesk-preflight") is recorded in `probes`,
not `uploads`; `DELETE /v1/files/{id}` deletes a file and records it in `deleted`.

Everything is recorded: `uploads` (the JSONL lines of every file), `batches`
(every batch object as created), `polls`, `cancels`, `downloads`; the chat
endpoint's own `state.requests` stays empty when nothing called it directly.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from typing import Any

from fake_openai import FakeOpenAI, echo_headers

STATES = ("validating", "in_progress", "finalizing", "completed")


class FakeBatchAPI(FakeOpenAI):
    def __init__(self, *, batch_api: bool = True, cached_share: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_api = batch_api
        self.cached_share = cached_share
        self.files: dict[str, bytes] = {}
        self.uploads: list[list[dict[str, Any]]] = []
        self.upload_purposes: list[str] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.polls: list[str] = []
        self.cancels: list[str] = []
        self.downloads: list[str] = []
        self.line_faults: dict[str, list[str]] = {}
        #: Lines answered before a cancel takes effect (the rest are left out of the output).
        self.cancel_completed = 0
        self.hold = threading.Event()
        self.fail_creates: list[int] = []  # HTTP statuses to answer the next batch creations with
        self.usage_by_custom_id: dict[str, dict[str, Any]] = {}
        #: Every request's method and path, as received.
        self.paths: list[tuple[str, str]] = []
        #: The headers of the last batch creation (an "echo" line fault quotes them back).
        self.create_headers: dict[str, str] = {}
        #: Ids to give the next created batches instead of "batch-NNNN" (an API gone wrong).
        self.batch_ids: list[str] = []
        #: Answers to the next polls instead of the batch: "deep" (nested JSON), "huge" (a big body).
        self.poll_faults: list[str] = []
        self.refuse_uploads: tuple[int, str] | None = None
        self.probes: list[list[dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.upload_attempts = 0
        self._counter = 0

    # -- routing ------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter:04d}"

    def _extra_get(self, handler: Any) -> bool:
        with self._lock:
            self.paths.append(("GET", handler.path))
        path = handler.path.split("?", 1)[0].rstrip("/")
        if not self.batch_api and ("/files" in path or "/batches" in path):
            self._send(handler, 404, {"detail": "Not Found"})
            return True
        if path.endswith("/v1/files"):
            self._send(handler, 200, {"object": "list", "data": [{"id": k, "object": "file"} for k in self.files]})
            return True
        if m := re.search(r"/v1/files/([^/]+)/content$", path):
            with self._lock:
                self.downloads.append(m.group(1))
                data = self.files.get(m.group(1))
            if data is None:
                self._send(handler, 404, {"error": {"message": "No such file"}})
            else:
                self._send(handler, 200, None, raw=data)
            return True
        if path.endswith("/v1/batches"):
            with self._lock:
                data = [dict(b) for b in reversed(list(self.batches.values()))]
            self._send(handler, 200, {"object": "list", "data": data, "has_more": False})
            return True
        if m := re.search(r"/v1/batches/([^/]+)$", path):
            with self._lock:
                fault = self.poll_faults.pop(0) if self.poll_faults else None
            if fault == "deep":
                self._send(handler, 200, None, raw=b'{"status": "in_progress", "x": ' + b"[" * 100_000
                           + b"]" * 100_000 + b"}")
            elif fault == "huge":
                self._send(handler, 200, {"status": "in_progress", "x": "y" * self.huge_bytes})
            else:
                self._send(handler, *self._poll(m.group(1)))
            return True
        return False

    def _extra_post(self, handler: Any, raw: bytes) -> bool:
        with self._lock:
            self.paths.append(("POST", handler.path))
        path = handler.path.split("?", 1)[0].rstrip("/")
        if not self.batch_api and ("/files" in path or "/batches" in path):
            self._send(handler, 404, {"detail": "Not Found"})
            return True
        if path.endswith("/v1/files"):
            self._upload(handler, raw)
            return True
        if path.endswith("/v1/batches"):
            self.create_headers = dict(handler.headers)
            self._create(handler, json.loads(raw))
            return True
        if m := re.search(r"/v1/batches/([^/]+)/cancel$", path):
            with self._lock:
                batch = self.batches.get(m.group(1))
                self.cancels.append(m.group(1))
                if batch is not None and batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                    batch["status"] = "cancelling"
            self._send(handler, 200 if batch else 404, batch or {"error": {"message": "No such batch"}})
            return True
        return False

    def _extra_delete(self, handler: Any) -> bool:
        path = handler.path.split("?", 1)[0].rstrip("/")
        m = re.search(r"/v1/files/([^/]+)$", path)
        if not self.batch_api or m is None:
            return False
        with self._lock:
            found = self.files.pop(m.group(1), None) is not None
            if found:
                self.deleted.append(m.group(1))
        self._send(handler, 200 if found else 404,
                   {"id": m.group(1), "object": "file", "deleted": True} if found else {"error": {"message": "No such file"}})
        return True

    # -- files ----------------------------------------------------------------------------

    def _upload(self, handler: Any, raw: bytes) -> None:
        with self._lock:
            self.upload_attempts += 1
        if self.refuse_uploads is not None:
            status, message = self.refuse_uploads
            self._send(handler, status, {"error": {"message": message, "type": "internal_server_error"}})
            return
        header = f"Content-Type: {handler.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True)
        purpose = fields.get("purpose", b"").decode()
        content = fields.get("file")
        if purpose != "batch" or content is None:
            self._send(handler, 400, {"error": {"message": "purpose must be batch and a file is required"}})
            return
        lines = [json.loads(line) for line in content.decode("utf-8").splitlines() if line.strip()]
        file_id = self._new_id("file")
        with self._lock:
            self.files[file_id] = content
            if len(lines) == 1 and lines[0].get("custom_id") == "copydesk-preflight":
                self.probes.append(lines)
            else:
                self.uploads.append(lines)
                self.upload_purposes.append(purpose)
        self._send(handler, 200, {"id": file_id, "object": "file", "bytes": len(content), "purpose": "batch",
                                  "filename": "batch.jsonl", "created_at": int(time.time())})

    # -- batches ----------------------------------------------------------------------------

    def _create(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            fail = self.fail_creates.pop(0) if self.fail_creates else None
        if fail is not None:
            self._send(handler, fail, {"error": {"message": "The server had an error"}})
            return
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            self._send(handler, 400, {"error": {"message": "endpoint and completion_window are required"}})
            return
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            self._send(handler, 400, {"error": {"message": "No such file"}})
            return
        total = len(self._lines(file_id))
        with self._lock:
            given = self.batch_ids.pop(0) if self.batch_ids else None
        batch = {
            "id": given or self._new_id("batch"), "object": "batch", "endpoint": body["endpoint"],
            "input_file_id": file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": total, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        with self._lock:
            self.batches[batch["id"]] = batch
            self.created.append(dict(batch))
        self._send(handler, 200, batch)

    def _lines(self, file_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.files[file_id].decode("utf-8").splitlines() if line.strip()]

    def _poll(self, batch_id: str) -> tuple[int, Any]:
        with self._lock:
            self.polls.append(batch_id)
            batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": "No such batch"}}
        status = batch["status"]
        if status == "cancelling":
            self._finish(batch, limit=self.cancel_completed, final="cancelled")
        elif status in STATES[:-1]:
            if status == "in_progress" and self.hold.is_set():
                pass
            elif STATES[STATES.index(status) + 1] == "completed":
                self._finish(batch, limit=None, final="completed")
            else:
                batch["status"] = STATES[STATES.index(status) + 1]
        return 200, dict(batch)

    def _finish(self, batch: dict[str, Any], *, limit: int | None, final: str) -> None:
        lines = self._lines(batch["input_file_id"])
        if limit is not None:
            lines = lines[:limit]
        outputs, errors = [], []
        for line in lines:
            fault = self._line_fault(line["custom_id"])
            if fault is None and line["body"].get("model") not in self.models:
                fault = "model"  # like OpenAI: a line naming a model this server does not have fails with 404
            if fault == "model":
                errors.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                               "response": {"status_code": 404, "request_id": "req-x", "body": {"error": {
                                   "message": f"The model `{line['body'].get('model')}` does not exist",
                                   "code": "model_not_found"}}}, "error": None})
            elif fault == "echo":  # the line refused, quoting the headers of the batch's creation
                errors.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                               "response": {"status_code": 401, "request_id": "req-x", "body": {"error": {
                                   "message": echo_headers("/v1/chat/completions", self.create_headers)}}},
                               "error": None})
            elif fault in ("huge", "deep"):
                outputs.append(self._odd_line(line, fault))
            elif fault == "error":
                errors.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "server_error", "message": "the line failed"}})
            elif fault in ("500", "400"):
                errors.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                               "response": {"status_code": int(fault), "request_id": "req-x",
                                            "body": {"error": {"message": f"HTTP {fault} for this line"}}},
                               "error": None})
            else:
                outputs.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                                "response": {"status_code": 200, "request_id": "req-x",
                                             "body": self._completion(line["custom_id"], line["body"])},
                                "error": None})
        outputs.reverse()  # the order is not guaranteed
        batch["request_counts"] = {"total": len(self._lines(batch["input_file_id"])), "completed": len(outputs),
                                   "failed": len(errors)}
        if outputs:
            batch["output_file_id"] = self._store_file(
                "\n".join(o if isinstance(o, str) else json.dumps(o) for o in outputs) + "\n")
        if errors:
            batch["error_file_id"] = self._store_file("\n".join(json.dumps(e) for e in errors) + "\n")
        batch["status"] = final

    def _odd_line(self, line: dict[str, Any], fault: str) -> str:
        """An output line too large ("huge": its content `huge_bytes` long) or too deep ("deep")."""
        head = f'{{"id": "batch_req_x", "custom_id": {json.dumps(line["custom_id"])}, "response": '
        if fault == "deep":
            return head + '{"status_code": 200, "body": ' + "[" * self.deep_levels + "]" * self.deep_levels + "}}"
        body = self._completion(line["custom_id"], line["body"])
        body["choices"][0]["message"]["content"] = "word " * (self.huge_bytes // 5)
        return head + json.dumps({"status_code": 200, "body": body}) + "}"

    def _store_file(self, text: str) -> str:
        file_id = self._new_id("file")
        with self._lock:
            self.files[file_id] = text.encode("utf-8")
        return file_id

    def _line_fault(self, custom_id: str) -> str | None:
        with self._lock:
            for needle, faults in self.line_faults.items():
                if needle in custom_id and faults:
                    return faults.pop(0)
        return None

    def _completion(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        text, finish, prompt_tokens, completion_tokens = self.reply_with_usage(body)
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if self.cached_share:
            usage["prompt_tokens_details"] = {"cached_tokens": int(prompt_tokens * self.cached_share)}
        with self._lock:
            self.state.prompt_tokens += prompt_tokens
            self.state.completion_tokens += completion_tokens
            self.usage_by_custom_id[custom_id] = usage
        return {"id": "chatcmpl-batch", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", ""), "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}

    @property
    def batch_lines(self) -> list[dict[str, Any]]:
        """Every line of every uploaded file, in order."""
        return [line for upload in self.uploads for line in upload]
