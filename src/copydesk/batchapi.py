"""The OpenAI Batch API's requests (batch mode, copydesk.batch), over `ChatClient`.

    BatchApi      upload (`POST /files`), create (`POST /batches`), poll (`GET /batches/{id}`),
                  find (`GET /batches`), cancel (`POST /batches/{id}/cancel`) and download
                  (`GET /files/{id}/content`), each retried per the run's policy
    check_id      an id from the server (or from a run file) before it goes into a URL

The server is untrusted: an id is used in a URL only when it matches `ID_PATTERN` (the
shape of OpenAI's `batch_...`/`file-...` ids), so an answer like `../../evil` or an id with
control characters can never send a request, with the key, anywhere else; such an answer
is an `UnusableResponseError` (never retried: the answer would be the same). A downloaded
file is read line by line, each line at most `COPYDESK_MAX_ANSWER_BYTES` and nested at most
`copydesk.boundedjson.MAX_DEPTH` deep; a line that is not is one failed line with the
reason (`LIMIT_KEY`), never a failed batch.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from copydesk import boundedjson
from copydesk.client import ChatClient, CutLine, RetryPolicy
from copydesk.errors import MalformedResponseError, UnusableResponseError

log = logging.getLogger("copydesk.batch")

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
#: What a batch or file id may look like before it goes into a URL.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A row made for a line copydesk would not read: its reason (copydesk.batch fails that line with it).
LIMIT_KEY = "copydesk_unreadable"
#: Lines read of one downloaded file at most (the Batch API's own limit is 50,000 per batch).
MAX_FILE_LINES = 100_000
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,200})"')


def check_id(value: Any, what: str) -> str:
    """`value` when it is an id fit for a URL; else UnusableResponseError naming `what`."""
    if isinstance(value, str) and ID_PATTERN.fullmatch(value):
        return value
    shown = repr(value)[:60].encode("ascii", "backslashreplace").decode()
    raise UnusableResponseError(
        f"the Batch API gave {what} {shown}, which is not an id (letters, digits, '_' and '-', at most "
        "128): copydesk does not put it into a URL"
    )


class BatchApi:
    """The Batch API's requests; each retried per `retry` (429, 5xx, timeouts)."""

    def __init__(self, client: ChatClient, retry: RetryPolicy) -> None:
        self.client = client
        self.retry = retry

    async def upload(self, data: bytes) -> str:
        answer = await self.client.request_json(
            "POST", "files", retry=self.retry,
            files={"file": ("copydesk-batch.jsonl", data, "application/jsonl")}, data={"purpose": "batch"},
        )
        return check_id(_field(answer, "id", "files"), "the uploaded file's id")

    async def create(self, file_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        answer = await self.client.post_json(
            "batches",
            {"input_file_id": check_id(file_id, "a file id"), "endpoint": ENDPOINT,
             "completion_window": COMPLETION_WINDOW, "metadata": metadata},
            retry=self.retry,
        )
        check_id(_field(answer, "id", "batches"), "the new batch's id")
        return answer

    async def get(self, batch_id: str) -> dict[str, Any]:
        path = f"batches/{check_id(batch_id, 'a batch id')}"
        answer = await self.client.request_json("GET", path, retry=self.retry)
        _field(answer, "status", path)
        for name in ("output_file_id", "error_file_id"):
            if answer.get(name):
                check_id(answer[name], f"batch {batch_id}'s {name}")
        return answer

    async def find(self, file_id: str) -> dict[str, Any] | None:
        """The batch made from `file_id`, among the most recent ones (after a kill between
        creating a batch and recording its id); one whose id is not an id is left out."""
        answer = await self.client.request_json("GET", "batches", params={"limit": 100}, retry=self.retry)
        for batch in answer.get("data", []) if isinstance(answer, dict) else []:
            if isinstance(batch, dict) and batch.get("input_file_id") == file_id:
                if isinstance(batch.get("id"), str) and ID_PATTERN.fullmatch(batch["id"]):
                    return batch
                log.warning("the batch made from file %s has an id that is not an id: not used", file_id)
        return None

    async def cancel(self, batch_id: str, *, retry: bool = True) -> dict[str, Any]:
        return await self.client.request_json("POST", f"batches/{check_id(batch_id, 'a batch id')}/cancel",
                                              retry=self.retry if retry else None)

    async def content(self, file_id: str) -> list[dict[str, Any]]:
        """The rows of a downloaded output or error file; a line too large or too deep is a row
        `{"custom_id": ..., LIMIT_KEY: reason}` when its custom_id can be read, else left out."""
        path = f"files/{check_id(file_id, 'a file id')}/content"
        lines = await self.client.get_lines(path, retry=self.retry, max_lines=MAX_FILE_LINES)
        rows = []
        for number, line in enumerate(lines, 1):
            if isinstance(line, CutLine):
                rows += _unreadable(line.head, file_id, number,
                                    f"the line is larger than {self.client.max_answer_bytes:,} bytes "
                                    "(COPYDESK_MAX_ANSWER_BYTES)")
                continue
            if not line.strip():
                continue
            try:
                row = boundedjson.loads(line)
            except boundedjson.JsonLimitError as exc:
                rows += _unreadable(line[:CutLine.HEAD], file_id, number, str(exc))
                continue
            except ValueError:
                log.warning("file %s, line %d: not JSON; the line is treated as failed", file_id, number)
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows


def _unreadable(head: bytes, file_id: str, number: int, reason: str) -> list[dict[str, Any]]:
    log.warning("file %s, line %d: %s; the line is treated as failed", file_id, number, reason)
    match = _CUSTOM_ID.search(head)
    return [{"custom_id": match.group(1).decode(), LIMIT_KEY: reason}] if match else []


def _field(answer: Any, name: str, path: str) -> Any:
    if not isinstance(answer, dict) or not answer.get(name):
        raise MalformedResponseError(f"{path}: the answer has no {name!r}")
    return answer[name]

