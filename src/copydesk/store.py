"""The call store: what makes a re-run with the same `--run-id` pay nothing twice.

Every successful call is appended to `calls.jsonl` in the run folder as one
JSON line and flushed to the operating system before the caller sees the
result, so a process killed with SIGKILL loses no finished call. A re-run
indexes the file and answers any call it already holds without touching the API.
The answers stay on disk: memory holds each key's place in the file, and a hit
reads its line back (with every answer in memory a 10,000-topic run peaked at 1,017 MB).

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
import os
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
    """The call store of one run folder (`path`), or of memory alone (`path` None).

    Only an index is kept in memory: each call key with the place of its line in the file
    (~0.2 KB a call: ~12 MB for 10,000 topics of 7 calls), not the answers (issue 25: with
    every answer in memory a 10,000-topic run passed 1 GB). `get` reads the line back: one
    `pread` and one JSON parse per hit, as loading the whole file parsed every line before."""

    FILENAME = CALLS_NAME

    def __init__(self, path: Path | None) -> None:
        self.path = path
        #: Where each key's latest line is in the file: offset << 32 | length (one int per call).
        self._index: dict[str, int] = {}
        #: The answers themselves, for a store without a file (or one already closed) only.
        self._memory: dict[str, Completion] = {}
        #: Batch records (copydesk.batch) by their ref, in the order they were first written.
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._file = None
        self._reader: int | None = None
        self._end = 0
        if path is not None:
            complete = self._load(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open_private(path, "ab")  # 0600: every prompt and answer of the run
            if not complete:
                # End the cut-short last line, so the next record starts a line of its own.
                self._file.write(b"\n")
                self._file.flush()
            self._end = os.fstat(self._file.fileno()).st_size
            self._reader = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def __len__(self) -> int:
        return len(self._index.keys() | self._memory.keys()) if self._memory else len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index or key in self._memory

    def _load(self, path: Path) -> bool:
        """Index every readable record; False when the last line has no newline (cut short)."""
        if not path.exists():
            return True
        complete = True
        offset = 0
        # Binary, decoded line by line: a line cut inside a multi-byte character is
        # one unreadable record, not an error for the whole file.
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                start, offset = offset, offset + len(raw)
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
                    _completion(row)  # checked now: a record that cannot be read back is no hit
                    self._index[row["key"]] = start << 32 | len(raw)
                except (ValueError, KeyError, TypeError, AttributeError):
                    # The last line of a killed process may be cut short; anything else is worth a word.
                    # (UnicodeDecodeError is a ValueError.)
                    log.warning("%s:%d: skipping an unreadable record", path, number)
        return complete

    def get(self, key: str) -> Completion | None:
        if self._memory and (kept := self._memory.get(key)) is not None:
            return kept
        place = self._index.get(key)
        if place is None:
            return None
        raw = self._read(place >> 32, place & 0xFFFFFFFF)
        try:
            return _completion(boundedjson.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError):  # the file was changed under the run
            log.warning("%s: the record of call %s cannot be read back; calling again", self.path, key[:12])
            return None

    def _read(self, offset: int, length: int) -> bytes:
        reader = self._reader
        if reader is not None and hasattr(os, "pread"):  # POSIX; elsewhere the file is opened per read
            try:
                return os.pread(reader, length, offset)
            except OSError:  # closed by `close()` meanwhile
                pass
        assert self.path is not None
        with self.path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            if self._file is None:  # no file, or closed: this process still answers from it
                self._memory[key] = completion
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
            line = (redact_known(json.dumps(row, ensure_ascii=False)) + "\n").encode("utf-8")
            self._file.write(line)
            self._file.flush()
            self._index[key] = self._end << 32 | len(line)
            self._end += len(line)

    def put_batch(self, record: dict[str, Any]) -> None:
        """Record (or update, by its `ref`) a batch: written and flushed before this returns."""
        with self._lock:
            self.batches.setdefault(record["ref"], {}).update(record)
            if self._file is None:
                return
            line = (redact_known(json.dumps({"batch": record}, ensure_ascii=False)) + "\n").encode("utf-8")
            self._file.write(line)
            self._file.flush()
            self._end += len(line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._reader is not None:
                reader, self._reader = self._reader, None
                os.close(reader)


def _completion(row: dict[str, Any]) -> Completion:
    usage = Usage(*row["usage"]) if row.get("usage") else None
    return Completion(text=row["text"], finish_reason=row.get("finish_reason"), usage=usage, model=row["model"])
