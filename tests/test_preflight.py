"""The preflight (copydesk.preflight) and what goes with it, against the fake API over loopback:
a 5xx saying 'not configured' counts as a 404; the moderation endpoint probed once and
`qc.moderation.on_unavailable` applied; the Batch API probed by a one-line upload that is deleted
again; auto mode falling back to realtime when a batch cannot be created mid-run; batch mode
failing fast with one layer of retries; `batch.model`; the exit code of a run that produced nothing;
the attempts a refused call logs. tests/test_gateway.py does the same through LiteLLM's proxy."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
import yaml
from fake_batch import FakeBatchAPI
from fake_openai import FakeOpenAI
from pydantic import SecretStr, ValidationError

from copydesk.client import ApiEndpoint, ChatClient, feature_missing
from copydesk.errors import ApiError, AuthenticationError, BadRequestError, InputError, ServerError, ServiceError
from copydesk.orchestration import run_batch
from copydesk.preflight import check_moderation, choose_mode
from copydesk.qc.moderation import EndpointOrLocalModerator, LocalModerator, OpenAIModerator, UnavailableModerator
from copydesk.request import RunRequest
from copydesk.runner import RunSummary
from copydesk.settings import Settings
from copydesk.qc.moderation import ModerationPolicy
from copydesk.spec import load_spec

KEY = SecretStr("sk-test-preflight-0123456789")


async def _error(status: int, body: dict) -> ApiError:
    client = ChatClient(ApiEndpoint("http://127.0.0.1:9/v1", KEY),
                        transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)))
    async with client:
        with pytest.raises(ApiError) as info:
            await client.request_json("POST", "files")
    return info.value


async def test_a_5xx_saying_not_configured_is_a_missing_feature_and_not_retried():
    litellm = await _error(500, {"error": {"message": "files_settings is not set, set it on your config.yaml file."}})
    assert isinstance(litellm, BadRequestError) and not litellm.retryable and feature_missing(litellm)
    assert "HTTP 500" in str(litellm) and "files_settings is not set" in str(litellm)
    credentials = await _error(500, {"error": {"message": "Missing credentials. Please pass an `api_key`"}})
    assert feature_missing(credentials) and not credentials.retryable
    assert feature_missing(await _error(501, {"error": {"message": "Error code: 501"}}))
    assert feature_missing(await _error(404, {"detail": "Not Found"}))
    busy = await _error(500, {"error": {"message": "The server had an error"}})
    assert isinstance(busy, ServerError) and busy.retryable and not feature_missing(busy)


def test_on_unavailable_defaults_by_provider_and_batch_models(gateway_spec):
    assert ModerationPolicy().unavailable_action == "local"
    assert ModerationPolicy(provider="openai").unavailable_action == "fail"
    assert ModerationPolicy(provider="openai", on_unavailable="review").unavailable_action == "review"
    with pytest.raises(ValidationError):
        ModerationPolicy(on_unavailable="ignore")
    spec = load_spec(gateway_spec)
    assert [spec.batch_model_for(s) for s in ("title", "outline", "expansion")] == [
        "up-writer", "up-writer", "up-writer-long"]
    assert spec.model_for("outline") == "gw-outliner"  # realtime calls keep the gateway's names


# ------------------------------------------------------------------------------ moderation


def _moderator(fake_url: str, provider: str, **policy: str):
    moderator = OpenAIModerator(fake_url, KEY, max_attempts=3, backoff_initial=0.01)
    if provider == "auto":
        moderator = EndpointOrLocalModerator(moderator, LocalModerator())
    return moderator, ModerationPolicy(provider=provider, **policy)


async def test_moderation_preflight_policies():
    with FakeOpenAI(moderation_endpoint=False) as fake:
        moderator, policy = _moderator(fake.url, "auto")
        chosen, note = await check_moderation(moderator, policy)
        assert isinstance(chosen, LocalModerator) and "local classifier" in note and "HTTP 404" in note
        moderator, policy = _moderator(fake.url, "openai")
        with pytest.raises(InputError, match=re.escape(f"{fake.url}/moderations") + r".*HTTP 404"):
            await check_moderation(moderator, policy)
        moderator, policy = _moderator(fake.url, "openai", on_unavailable="review")
        chosen, note = await check_moderation(moderator, policy)
        assert isinstance(chosen, UnavailableModerator) and "held for review" in note
        with pytest.raises(ServiceError, match="preflight"):
            await chosen.moderate(["text"])
    with FakeOpenAI() as fake:  # a working endpoint: kept, one tiny request
        moderator, policy = _moderator(fake.url, "openai")
        assert await check_moderation(moderator, policy) == (moderator, None)
        assert [r["input"] for r in fake.moderation_requests] == [["preflight"]]


async def test_moderation_preflight_raises_a_refused_key_whatever_the_policy():
    moderator = OpenAIModerator("http://127.0.0.1:9/v1", KEY, transport=httpx.MockTransport(
        lambda request: httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})))
    with pytest.raises(AuthenticationError):
        await check_moderation(moderator, ModerationPolicy(provider="openai", on_unavailable="local"))


async def test_a_local_moderator_needs_no_preflight():
    local = LocalModerator()
    assert await check_moderation(local, ModerationPolicy(provider="local")) == (local, None)
    assert await check_moderation(None, ModerationPolicy(enabled=False)) == (None, None)


# ------------------------------------------------------------------------------ the mode


async def _mode(fake: FakeBatchAPI, mode: str) -> tuple[str, str | None]:
    endpoint = ApiEndpoint(fake.url, KEY)
    async with ChatClient(endpoint) as client:
        return await choose_mode(mode, client, endpoint, local_model=None, model="gpt-4o-mini")


async def test_the_batch_probe_uploads_one_line_and_deletes_it():
    with FakeBatchAPI() as fake:
        assert await _mode(fake, "auto") == ("batch", None)
        assert len(fake.probes) == 1 and fake.probes[0][0]["body"]["max_tokens"] == 1
        assert fake.deleted and fake.uploads == [] and fake.created == []  # no batch, nothing spent


async def test_refused_uploads_auto_runs_realtime_batch_exits_2_transient_raises():
    with FakeBatchAPI() as fake:
        fake.refuse_uploads = (500, "files_settings is not set, set it on your config.yaml file.")
        mode, note = await _mode(fake, "auto")
        assert mode == "realtime" and "files_settings is not set" in note and fake.upload_attempts == 1
        with pytest.raises(InputError, match=r"mode: batch .*HTTP 500.*files_settings is not set"):
            await _mode(fake, "batch")
        assert fake.upload_attempts == 2  # one each: not retried
        fake.refuse_uploads = (503, "The server had an error")
        with pytest.raises(ServerError):
            await _mode(fake, "batch")
        assert fake.upload_attempts == 4  # a transient failure: once more, then it is the run's error


def _request(spec: Path, tmp_path: Path, topics: list[str], mode: str, **kw: object) -> RunRequest:
    return RunRequest(spec_path=str(spec), topics=topics, out_dir=str(tmp_path / "out"), mode=mode, **kw)


def _settings(fake: FakeBatchAPI) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, backoff_initial=0.01, batch_poll_seconds=0.02, max_attempts=3)


async def test_auto_mode_goes_realtime_when_a_batch_cannot_be_created(basic_spec, tmp_path):
    with FakeBatchAPI() as fake:
        fake.fail_creates = [400]
        summary = await run_batch(_request(basic_spec, tmp_path, ["one", "two"], "auto"), _settings(fake))
    assert fake.created == [] and len(fake.uploads) == 1  # one try, then realtime
    assert summary.mode == "realtime" and summary.by_status == {"published": 2}
    assert len(fake.state.requests) >= 10 and summary.exit_code == 0
    assert any("mode: auto: the Batch API failed" in note for note in summary.notes)


async def test_batch_mode_fails_fast_with_one_layer_of_retries(basic_spec, tmp_path):
    with FakeBatchAPI() as fake:
        fake.fail_creates = [500] * 20
        summary = await run_batch(_request(basic_spec, tmp_path, ["one", "two"], "batch"), _settings(fake))
        creates = 20 - len(fake.fail_creates)
    assert creates == 3 and len(fake.uploads) == 1  # the API layer's 3 attempts, once (was 3 x 3)
    assert summary.fatal_error and "HTTP 500" in summary.fatal_error
    assert summary.by_status == {"incomplete": 2} and summary.exit_code == 1
    assert fake.state.requests == []


async def test_batch_lines_carry_the_batch_model(basic_spec, tmp_path):
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["model"] = "gw-writer"  # the gateway's alias; the upstream knows gpt-4o-mini
    data["batch"] = {"model": "gpt-4o-mini"}
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    with FakeBatchAPI() as fake:
        summary = await run_batch(_request(basic_spec, tmp_path, ["one"], "batch"), _settings(fake))
    assert {line["body"]["model"] for line in fake.batch_lines} == {"gpt-4o-mini"}
    assert summary.by_status == {"published": 1}


# ------------------------------------------------------------------------------ exit codes and messages


def _summary(by_status: dict[str, int], **kw: object) -> RunSummary:
    return RunSummary(run_id="r", run_dir="d", pipeline="p", articles=sum(by_status.values()), by_status=by_status,
                      prompt_tokens=0, completion_tokens=0, total_tokens=0, budget_limit=1, budget_spent=0,
                      est_cost_usd=0.0, calls=0, cached_calls=0, retries=0, rate_limited=0, seconds=0.0, **kw)


def test_exit_codes_tell_the_truth():
    nothing = _summary({"incomplete": 2}, first_incomplete_reason="API error: x\nsecond line")
    assert nothing.exit_code == 1
    assert nothing.failure() == "no article was produced: all 2 incomplete; the first: API error: x second line"
    assert _summary({"incomplete": 2}, stopped_by_budget=True).exit_code == 3
    assert _summary({"incomplete": 2}, fatal_exit_code=4).exit_code == 4
    partial = _summary({"incomplete": 1, "published": 1}, first_incomplete_reason="API error: y")
    assert partial.exit_code == 0 and partial.failure() is None
    assert _summary({"needs_review": 2}).exit_code == 0
    assert _summary({}).exit_code == 0  # no topics: nothing to produce


async def test_a_refused_outline_form_does_not_log_eight_attempts(basic_spec, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="copydesk")
    with FakeOpenAI(response_formats=("text", "json_object")) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)),
                                  Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01))
    assert summary.by_status == {"published": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert not any("attempt(s)" in m and "failed after" in m for m in messages), messages
    assert any("outline call refused (not retried, 1 attempt(s))" in m for m in messages)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("refused response_format json_schema" in m for m in warnings) == 1
