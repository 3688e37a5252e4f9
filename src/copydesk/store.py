"""The call store: what makes a re-run with the same `--run-id` pay nothing twice.

Every successful call is appended to `calls.jsonl` in the run folder as one
JSON line and flushed to the operating system before the caller sees the
result, so a process killed with SIGKILL loses no finished call. A re-run
loads the file and answers any call it already holds without touching the API.

The key is a SHA-256 of the article's identity (topic and its occurrence in the
batch), the stage, the section and the exact request (model, messages, sampling
values); the API key is never part of it, nor of anything stored.

Batch mode (copydesk.batch) records its batches here too, as lines `{"batch": {...}}`
merged by their `ref`: the uploaded file's id and which call key each line carries,
then the batch's id the moment it exists, then `done` once its results are stored.
A re-run re-attaches to every batch that is not done instead of submitting it again.

Why not Prefect's task cache: one record per call is what resume needs, and
Prefect's result persistence costs a task run (2.5-15 ms each, measured in
bench/) and a result file per call; this costs one `write()`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from copydesk import boundedjson
from copydesk.client import ChatRequest, Completion, Usage
from copydesk.private import open_private
from copydesk.redact import redact_known
from copydesk.rundir import CALLS_NAME, RunFolderError

log = logging.getLogger("copydesk.store")


def call_key(article_key: str, stage: str, part: int, request: ChatRequest) -> str:
    blob = json.dumps(
        {"article": article_key, "stage": stage, "part": part, "request": request.payload()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallStore:
    FILENAME = CALLS_NAME

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._records: dict[str, Completion] = {}
        #: Batch records (copydesk.batch) by their ref, in the order they were first written.
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            complete = self._load(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open_private(path, "a")  # 0600: every prompt and answer of the run
            if not complete:
                # End the cut-short last line, so the next record starts a line of its own.
                self._file.write("\n")
                self._file.flush()

    def __len__(self) -> int:
        return len(self._records)

    def _load(self, path: Path) -> bool:
        """Load every readable record; False when the last line has no newline (cut short)."""
        if not path.exists():
            return True
        complete = True
        # Binary, decoded line by line: a line cut inside a multi-byte character is
        # one unreadable record, not an error for the whole file.
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                complete = raw.endswith(b"\n")
                try:
                    row = boundedjson.loads(raw.decode("utf-8"))
                except boundedjson.JsonLimitError as exc:  # not a cut-short line: a damaged (or forged) file
                    raise RunFolderError(f"{path}, line {number}: {exc}; this run cannot be resumed "
                                         "(move the file away to start its calls again)") from None
                except ValueError:
                    log.warning("%s:%d: skipping an unreadable record", path, number)
                    continue
                try:
                    if isinstance(row.get("batch"), dict) and isinstance(row["batch"].get("ref"), str):
                        self.batches.setdefault(row["batch"]["ref"], {}).update(row["batch"])
                        continue
                    usage = Usage(*row["usage"]) if row.get("usage") else None
                    self._records[row["key"]] = Completion(
                        text=row["text"], finish_reason=row.get("finish_reason"), usage=usage, model=row["model"]
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    # The last line of a killed process may be cut short; anything else is worth a word.
                    # (UnicodeDecodeError is a ValueError.)
                    log.warning("%s:%d: skipping an unreadable record", path, number)
        return complete

    def get(self, key: str) -> Completion | None:
        return self._records.get(key)

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            self._records[key] = completion
            if self._file is None:
                return
            usage = completion.usage
            row = {
                "key": key,
                "model": completion.model,
                "finish_reason": completion.finish_reason,
                "usage": [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
                          usage.cached_prompt_tokens] if usage else None,
                "text": completion.text,
            }
            self._file.write(redact_known(json.dumps(row, ensure_ascii=False)) + "\n")
            self._file.flush()

    def put_batch(self, record: dict[str, Any]) -> None:
        """Record (or update, by its `ref`) a batch: written and flushed before this returns."""
        with self._lock:
            self.batches.setdefault(record["ref"], {}).update(record)
            if self._file is None:
                return
            self._file.write(redact_known(json.dumps({"batch": record}, ensure_ascii=False)) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
