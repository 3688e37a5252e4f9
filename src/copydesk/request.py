"""What defines a run, checked: the request, its topics and its run id.

`RunRequest` is JSON-serialisable, so it can be a flow parameter. The checks here
raise `InputError`s (exit 2) that name the topic, the file and line, or the flag,
before any server starts or any call is made.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from copydesk import rundir
from copydesk.controls import clean_line
from copydesk.errors import TopicError

#: Topics one run accepts at most (the CLI's --topic/--topics-file, a RunRequest); the
#: figure the scale benchmark runs. The editor form has a smaller cap of its own.
MAX_TOPICS_PER_RUN = 10_000


class RunRequest(BaseModel):
    """Everything that defines a run; JSON-serialisable, so it can be a flow parameter."""

    spec_path: str = Field(description="Path of the pipeline spec (YAML).")
    topics: list[str] = Field(min_length=1, description="One article per topic.")
    out_dir: str | None = Field(None, description="Folder that receives the run folder (default: outputs/).")
    run_id: str | None = Field(None, description="Names the run; the same id resumes it.")
    budget: int | None = Field(None, ge=1, description="Overrides budget.max_total_tokens.")
    concurrency: int | None = Field(None, ge=1, le=1024, description="Overrides concurrency.")
    vars: dict[str, Any] = Field(default_factory=dict, description="Overrides of the spec's vars.")
    mode: Literal["realtime", "batch", "auto"] | None = Field(
        None, description="Overrides the spec's mode: realtime calls, the OpenAI Batch API, or auto."
    )


def _too_many(where: str) -> TopicError:
    return TopicError(
        f"{where}: more than {MAX_TOPICS_PER_RUN:,} topics; one run takes at most {MAX_TOPICS_PER_RUN:,} "
        "(split them over several runs)"
    )


def clean_topics(topics: Iterable[str]) -> list[str]:
    """Whitespace folded, control, bidi and zero-width characters dropped, each topic non-empty, at most `MAX_TOPICS_PER_RUN` of them."""
    cleaned = []
    for number, topic in enumerate(topics, 1):
        if number > MAX_TOPICS_PER_RUN:
            raise _too_many("topics")
        text = re.sub(r"\s+", " ", clean_line(str(topic))).strip()
        if not text:
            raise TopicError(f"topic {number} is empty; every topic needs some text")
        cleaned.append(text)
    if not cleaned:
        raise TopicError("no topics given: use --topic T (repeatable) or --topics-file F")
    return cleaned


def read_topics_file(path: str | Path) -> list[str]:
    """One topic per line; blank lines and lines starting with # are skipped.

    Reading stops as soon as the file holds more than `MAX_TOPICS_PER_RUN` topics,
    so a huge file fails fast instead of being read whole."""
    path = Path(path)
    topics: list[str] = []
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise TopicError(f"{path}, line {number}: not UTF-8 text") from None
                topic = line.strip()
                if topic and not topic.startswith("#"):
                    if len(topics) == MAX_TOPICS_PER_RUN:
                        raise _too_many(f"{path}, line {number}")
                    topics.append(topic)
    except FileNotFoundError:
        raise TopicError(f"{path}: no such topics file") from None
    except OSError as exc:
        raise TopicError(f"{path}: cannot read: {exc.strerror}") from None
    if not topics:
        raise TopicError(f"{path}: no topics in the file")
    return topics


def new_run_id(pipeline: str) -> str:
    return f"{pipeline}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_run_id(run_id: str, *, field: str = "--run-id") -> str:
    """The run folder's rule (copydesk.rundir): a whole match, a name Windows can hold, no name
    copydesk writes itself; the error names `field` (the flag, or the editor form's field)."""
    return rundir.check_run_id(run_id, field=field)
