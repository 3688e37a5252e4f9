"""The preflight: what a run will need of the API, checked once and cheaply before its first paid call.

    moderation  when the run moderates through the API (`qc.moderation.provider: openai`, or
                `auto` with a key): one tiny input to the moderation endpoint. When that fails,
                `qc.moderation.on_unavailable` decides (unset: `local` for provider auto, `fail`
                for provider openai):
                  fail    InputError (exit 2) before any chat call, naming the endpoint, the
                          status and the server's message
                  local   the local classifier for the whole run, said once
                  review  every article held for review, said once now; the endpoint is not
                          asked again
                A 401/403 is the key's problem, not the feature's: it stops the run (exit 4).
    mode        `mode: batch | auto`: a one-line file uploaded to /v1/files (purpose batch), then
                deleted. A gateway that passes `GET /v1/files` through but cannot store a file
                (LiteLLM without `files_settings`) fails here, before the run's first stage:
                `batch` raises InputError (exit 2) with the server's message (the ApiError
                itself, exit 1, when the failure was transient); `auto` runs realtime, said once.

Neither check costs tokens: no batch is created and no chat call made. A 5xx saying a feature is
not configured counts as the feature missing (`copydesk.client.feature_missing`), like a 404.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from copydesk.batchapi import ENDPOINT as BATCH_ENDPOINT
from copydesk.batchapi import ID_PATTERN
from copydesk.client import ApiEndpoint, ChatClient, RetryPolicy, feature_missing
from copydesk.errors import ApiError, AuthenticationError, InputError
from copydesk.qc.moderation import (
    EndpointOrLocalModerator,
    LocalModerator,
    ModerationPolicy,
    OpenAIModerator,
    UnavailableModerator,
)

log = logging.getLogger("copydesk.preflight")

#: The upload probe: one attempt, and one more after a transient failure.
PROBE_RETRY = RetryPolicy(max_attempts=2, initial=0.5, max_delay=2.0, jitter=0.0)


# ------------------------------------------------------------------------------ moderation


async def check_moderation(moderator: Any, policy: ModerationPolicy) -> tuple[Any, str | None]:
    """The moderator the run uses after the preflight, and a note when the policy replaced it."""
    primary = moderator.primary if isinstance(moderator, EndpointOrLocalModerator) else moderator
    if not isinstance(primary, OpenAIModerator):
        return moderator, None  # local, or none: nothing to ask the API
    try:
        await primary.probe()
    except AuthenticationError:
        raise
    except ApiError as exc:
        failure = exc
    else:
        return moderator, None
    what = f"the moderation endpoint is unavailable ({failure})"
    action = policy.unavailable_action
    if action == "fail":
        raise InputError(
            f"qc.moderation: {what}; nothing was spent. Set up moderation on the server (behind a gateway: a "
            f"model named {primary.model!r}), or set qc.moderation.on_unavailable: local (the local classifier) "
            "or review (every article held for review)"
        )
    if action == "local":
        note = f"qc.moderation: {what}; moderating with the local classifier (on_unavailable: local)"
        log.warning("%s", note)
        return LocalModerator(policy.threshold), note
    note = f"qc.moderation: {what}; every article will be held for review (on_unavailable: review)"
    log.warning("%s", note)
    return UnavailableModerator(primary.name, f"the moderation endpoint failed the run's preflight: {failure}"), note


# ------------------------------------------------------------------------------ the mode


async def choose_mode(
    mode: str, client: ChatClient, endpoint: ApiEndpoint, *, local_model: str | None, model: str
) -> tuple[str, str | None]:
    """The mode a run uses (`realtime` or `batch`), and a note when `auto` fell back to realtime.
    `model` is the name the probe's one line carries (the first stage's batch model)."""
    if mode == "realtime":
        return "realtime", None
    if local_model is not None:
        problem, failure = f"the embedded local model ({endpoint.describe()}) has no Batch API", None
    else:
        problem, failure = await batch_api_problem(client, endpoint, model)
    if problem is None:
        return "batch", None
    if mode == "batch":
        if failure is not None and failure.retryable:
            raise failure  # not the input's fault: the server failed twice; exit 1
        raise InputError(
            f"mode: batch needs the OpenAI Batch API (/v1/files, /v1/batches), but {problem}; "
            "use mode: realtime, or mode: auto to fall back to realtime calls"
        )
    note = f"mode: auto: {problem}; running with realtime calls"
    log.warning("%s", note)
    return "realtime", note


async def batch_api_problem(client: ChatClient, endpoint: ApiEndpoint, model: str) -> tuple[str | None, ApiError | None]:
    """Upload a one-line batch file and delete it: (None, None) when the Batch API takes it, else
    what is wrong and the error. A 401/403 is raised."""
    line = {"custom_id": "copydesk-preflight", "method": "POST", "url": BATCH_ENDPOINT,
            "body": {"model": model, "messages": [{"role": "user", "content": "preflight"}], "max_tokens": 1}}
    data = (json.dumps(line) + "\n").encode("utf-8")
    try:
        answer = await client.request_json(
            "POST", "files", retry=PROBE_RETRY,
            files={"file": ("copydesk-preflight.jsonl", data, "application/jsonl")}, data={"purpose": "batch"},
        )
    except AuthenticationError:
        raise
    except ApiError as exc:
        if feature_missing(exc) and exc.status_code in (404, 405):
            return f"{endpoint.describe()} has no Batch API (no {endpoint.describe('files')}: HTTP {exc.status_code})", exc
        return f"a one-line upload to {endpoint.describe('files')} failed: {exc}", exc
    file_id = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(file_id, str) or not file_id:
        return f"{endpoint.describe('files')} answered an upload without a file id", None
    await _delete(client, file_id)
    return None, None


async def _delete(client: ChatClient, file_id: str) -> None:
    """Delete the probe's file; a failure is only logged (the file is one line, no batch uses it)."""
    if not ID_PATTERN.fullmatch(file_id):  # the one id rule (copydesk.batchapi)
        log.info("not deleting the preflight file: its id %r is not fit for a URL", file_id[:80])
        return
    try:
        await client.request_json("DELETE", f"files/{file_id}")
    except ApiError as exc:
        log.info("could not delete the preflight file %s (%s)", file_id, exc)
