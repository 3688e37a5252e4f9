"""Deployments on a real Prefect server: `copydesk serve` (the editor and the scheduled
deployments), runs started from the Prefect CLI and the client API, artifacts, the review
pause, and prefect.yaml deployed to a process work pool with a worker.

Everything talks to the session's Prefect server (conftest `prefect_server`) and to a fake
OpenAI-compatible API over loopback; the pipelines folder is a temporary one the project
has never seen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, ROOT, SECRET_KEY
from fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

EDITOR = "copydesk-editor/editor"
BASIC_FORM = "copydesk-editor/basic"


# ------------------------------------------------------------------------------ helpers (also used by test_ui_browser)


def _registered_in_cli() -> bool:
    """True once copydesk.cli registers serve/review/server (then `copydesk serve` is used)."""
    from copydesk.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    return "serve" in names and "server" in groups


def copydesk_command(*args: str) -> list[str]:
    if _registered_in_cli():
        return [str(Path(sys.executable).with_name("copydesk")), *args]
    return [sys.executable, "-m", "copydesk.serve_cli", *args]


def prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


#: The `typed` pipeline's variables (make_pipelines(typed=True)): the editor form's typed fields.
TYPED_VARS = {
    "audience": {"type": "choice", "choices": ["testers", "students", "editors"], "default": "testers",
                 "description": "Who reads the articles."},
    "words": {"type": "integer", "default": 600, "description": "About how many words each article has."},
    "formal": {"type": "bool", "description": "Write formally."},
}


def make_pipelines(root: Path, *, typed: bool = False) -> Path:
    """A pipelines folder: basic (scheduled), strict (every article needs review), a broken spec,
    and outside.yaml: a symlink to a valid spec named `outside` kept elsewhere (never served);
    with `typed`, also `typed`: basic with declared variables (TYPED_VARS) and a description."""
    shutil.copytree(FIXTURES / "prompts", root / "prompts")
    folder = root / "pipelines"
    folder.mkdir()
    spec = yaml.safe_load((FIXTURES / "pipelines" / "basic.yaml").read_text(encoding="utf-8"))
    scheduled = {**spec, "schedule": {"cron": "0 6 * * 1-5", "timezone": "Asia/Shanghai", "topics": ["Scheduled topic"]}}
    (folder / "basic.yaml").write_text(yaml.safe_dump(scheduled, allow_unicode=True), encoding="utf-8")
    strict = {**spec, "name": "strict", "qc": {**spec["qc"], "min_words": 5000}}
    (folder / "strict-review.yml").write_text(yaml.safe_dump(strict, allow_unicode=True), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: broken\nstages: [\n", encoding="utf-8")
    if typed:
        typed_spec = {**spec, "name": "typed", "vars": TYPED_VARS,
                      "description": "Short test articles for whoever reads them."}
        (folder / "typed.yaml").write_text(yaml.safe_dump(typed_spec, allow_unicode=True, sort_keys=False),
                                            encoding="utf-8")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "outside.yaml").write_text(yaml.safe_dump({**spec, "name": "outside"}, allow_unicode=True),
                                            encoding="utf-8")
    (folder / "outside.yaml").symlink_to(elsewhere / "outside.yaml")
    return folder


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_"))}
    env.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="200",
               PREFECT_RUNNER_POLL_FREQUENCY="1", COPYDESK_METRICS_PORT="0", COPYDESK_KEEP_SERVERS="false")
    env.update(extra)
    return env


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process started in its own session, with everything it started."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # flow-run subprocesses left behind, if any
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Served:
    proc: subprocess.Popen
    api_url: str
    pipelines: Path
    out_dir: Path
    log: Path
    fake: FakeOpenAI

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_serve(api_url: str | None, root: Path, fake: FakeOpenAI, *, typed: bool = False, **env_extra: str) -> Served:
    pipelines = make_pipelines(root, typed=typed)
    out_dir = root / "outputs"
    env = base_env(OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET_KEY, COPYDESK_PIPELINES_DIR=str(pipelines),
                   COPYDESK_OUTPUT_DIR=str(out_dir), COPYDESK_STATE_DIR=str(root / "state"),
                   COPYDESK_BACKOFF_INITIAL="0.05")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    env.update(env_extra)
    log = root / "serve.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(copydesk_command("serve"), env=env, cwd=root, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Served(proc, api_url or "", pipelines, out_dir, log, fake)


def wait_for_deployments(served: Served, client: Any, names: list[str], timeout: float = 90) -> dict[str, Any]:
    from prefect.exceptions import ObjectNotFound

    found: dict[str, Any] = {}

    def ready() -> bool:
        if served.proc.poll() is not None:
            raise AssertionError(f"copydesk serve exited ({served.proc.returncode}):\n{served.log_text()[-3000:]}")
        for name in names:
            if name not in found:
                try:
                    found[name] = client.read_deployment_by_name(name)
                except ObjectNotFound:
                    return False
        return True

    wait_for(ready, timeout, f"deployments {names}")
    return found


def _run_input(client: Any, flow_run_id: uuid.UUID, key: str) -> str | None:
    """A flow run input, or None while it does not exist yet (the pause saves its form just after pausing)."""
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_flow_run_input(flow_run_id, key)
    except ObjectNotFound:
        return None
    except Exception as exc:  # the sync client raises httpx errors for a 404 here
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return None
        raise


def review_form_ready(client: Any, flow_run_id: uuid.UUID) -> bool:
    return bool(_run_input(client, flow_run_id, "paused-copydesk-review-schema"))


def flow_run_id_of(output: str) -> uuid.UUID:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    return uuid.UUID(match.group(1))


def wait_final(client: Any, flow_run_id: uuid.UUID, timeout: float = 120) -> Any:
    def final() -> Any:
        run = client.read_flow_run(flow_run_id)
        return run if run.state and run.state.is_final() else None

    return wait_for(final, timeout, f"flow run {flow_run_id} to finish")


def artifacts_of(client: Any, flow_run_id: uuid.UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import ArtifactSort

    return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                 sort=ArtifactSort.CREATED_DESC)


def run_folder(out_dir: Path, flow_run_id: uuid.UUID) -> Path:
    folders = [p for p in out_dir.iterdir() if p.is_dir() and p.name.endswith(flow_run_id.hex[:8])]
    assert len(folders) == 1, list(out_dir.iterdir())
    return folders[0]


def read_csv(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)


# ------------------------------------------------------------------------------ copydesk serve


@pytest.fixture(scope="class")
def served(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from prefect.client.orchestration import SyncPrefectClient

    root = tmp_path_factory.mktemp("serve")
    with FakeOpenAI() as fake:
        started = time.monotonic()
        serving = start_serve(prefect_server, root, fake)
        try:
            with SyncPrefectClient(prefect_server) as client:
                wait_for_deployments(serving, client, [EDITOR, BASIC_FORM, "copydesk-scheduled/basic"])
            print(f"copydesk serve: deployments ready after {time.monotonic() - started:.1f} s")
            yield serving
        finally:
            stop_group(serving.proc)


@pytest.fixture
def client(prefect_server: str) -> Iterator[Any]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(prefect_server) as c:
        yield c


class TestServe:
    def test_editor_and_one_scheduled_deployment_with_typed_parameters(self, served, client):
        editor = client.read_deployment_by_name(EDITOR)
        assert editor.enforce_parameter_schema is True
        schema = editor.parameter_openapi_schema
        props = schema["properties"]
        assert {"pipeline", "topics", "vars", "budget"} <= set(props)
        assert set(schema["required"]) == {"pipeline", "topics"}
        # a choice among the served pipelines, by name (outside.yaml is a symlink out of the folder)
        assert props["pipeline"]["type"] == "string" and props["pipeline"]["enum"] == ["basic", "strict"]
        assert props["pipeline"]["pattern"] == "^[a-z0-9]+(?:-[a-z0-9]+)*$"
        # plain fields, no "X | None" switch: bounds in allOf (where the UI's form checks them), no null default
        assert props["budget"]["allOf"] == [{"type": "integer", "minimum": 1, "maximum": 10**9}]
        assert "anyOf" not in json.dumps(schema) and all(p.get("default", 0) is not None for p in props.values())
        assert props["mode"]["enum"] == ["as the spec says", "realtime", "batch", "auto"]
        assert props["topics"]["type"] == "array" and props["topics"]["minItems"] == 1
        assert props["topics"]["items"]["type"] == "string"
        assert props["vars"]["type"] == "object"
        assert all(props[name].get("description") for name in ("pipeline", "topics", "vars", "budget"))
        assert editor.parameters == {"review_timeout": 0}  # an editor run pauses for review only when asked

        # each pipeline's own form: its variables as typed fields, its cap as the budget's maximum
        own = client.read_deployment_by_name(BASIC_FORM)
        assert own.enforce_parameter_schema is True and own.parameters == {"review_timeout": 0}
        assert own.entrypoint == "copydesk_flows.forms.basic"  # the pipeline's own flow, by its name
        props = own.parameter_openapi_schema["properties"]
        assert props["topics"]["type"] == "string" and own.parameter_openapi_schema["required"] == ["topics"]
        assert list(props) == ["topics", "vars", "budget", "mode", "review_timeout", "run_id"]  # no pipeline field
        (fields,) = props["vars"]["allOf"]
        assert fields["additionalProperties"] is False
        assert fields["properties"]["audience"]["type"] == "string" and fields["properties"]["audience"]["default"] == "testers"
        assert props["budget"]["allOf"] == [{"type": "integer", "minimum": 1, "maximum": 60_000}]
        assert "60,000" in props["budget"]["description"] and "60,000" in own.description
        assert "anyOf" not in json.dumps(own.parameter_openapi_schema)
        assert not re.search(r"max_total_tokens|copydesk \w+", json.dumps(own.parameter_openapi_schema))

        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        scheduled = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=["copydesk-scheduled"])))
        assert [d.name for d in scheduled] == ["basic"]  # strict has no schedule: block; broken is skipped
        (deployment,) = scheduled
        assert deployment.enforce_parameter_schema is True
        assert deployment.parameters == {"pipeline": "basic", "review_timeout": 3600}
        assert deployment.parameter_openapi_schema["properties"]["pipeline"]["enum"] == ["basic"]
        (schedule,) = client.read_deployment_schedules(deployment.id)
        assert schedule.schedule.cron == "0 6 * * 1-5" and schedule.schedule.timezone == "Asia/Shanghai"
        assert "broken.yaml" in served.log_text() and "skipped" in served.log_text()
        assert "outside the pipelines folder" in served.log_text()

    def test_a_scheduled_deployment_runs_the_specs_schedule_topics(self, served, client):
        deployment = client.read_deployment_by_name("copydesk-scheduled/basic")
        run = client.create_flow_run_from_deployment(deployment.id)  # what the scheduler does at 06:00
        final = wait_final(client, run.id)
        assert final.state.is_completed(), final.state
        assert final.parameters == {"pipeline": "basic", "review_timeout": 3600}
        frame = read_csv(run_folder(served.out_dir, run.id))
        assert list(frame["topic"]) == ["Scheduled topic"] and list(frame["status"]) == ["published"]

    def test_the_server_refuses_bad_parameters(self, served, client):
        from prefect.exceptions import PrefectHTTPStatusError

        editor = client.read_deployment_by_name(EDITOR)
        scheduled = client.read_deployment_by_name("copydesk-scheduled/basic")
        requests_before = len(served.fake.state.requests)
        for bad in ({"pipeline": "basic", "topics": []}, {"pipeline": "basic", "topics": ["a"], "budget": 0},
                    {"pipeline": "basic", "topics": "not a list"}, {"topics": ["a"]},
                    # the pipeline is a choice among the served names: no path, no symlink, nothing else
                    {"pipeline": "../x", "topics": ["a"]}, {"pipeline": "/etc/passwd", "topics": ["a"]},
                    {"pipeline": "outside", "topics": ["a"]}, {"pipeline": "broken", "topics": ["a"]},
                    {"pipeline": "strict-review", "topics": ["a"]}, {"pipeline": "basic\n", "topics": ["a"]},
                    {"pipeline": "basic", "topics": ["a"], "budget": 10**30},
                    {"pipeline": "basic", "topics": ["a"], "budget": 10**9 + 1}):
            with pytest.raises(PrefectHTTPStatusError) as info:
                client.create_flow_run_from_deployment(editor.id, parameters=bad)
            assert info.value.response.status_code in (409, 422), bad
        own = client.read_deployment_by_name(BASIC_FORM)
        for bad in ({"topics": "a", "vars": {"audiance": "students"}}, {"topics": "a", "budget": 60_001},
                    {"topics": "a", "vars": {"audience": 3}}, {"topics": "a", "mode": "cheap"}, {"topics": ""},
                    {"topics": ["a"]}, {"vars": {"audience": "students"}}):  # the topics: one text box, required
            with pytest.raises(PrefectHTTPStatusError) as info:
                client.create_flow_run_from_deployment(own.id, parameters=bad)
            assert info.value.response.status_code in (409, 422), bad
        for bad in ({"pipeline": "strict"}, {"pipeline": "../x"}, {"pipeline": "basic", "budget": 10**30}):
            with pytest.raises(PrefectHTTPStatusError) as info:
                client.create_flow_run_from_deployment(scheduled.id, parameters=bad)
            assert info.value.response.status_code in (409, 422), bad
        assert len(served.fake.state.requests) == requests_before

    def test_a_form_budget_above_the_specs_cap_fails_the_run_before_any_call(self, served, client):
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        editor = client.read_deployment_by_name(EDITOR)
        requests_before = len(served.fake.state.requests)
        run = client.create_flow_run_from_deployment(  # within the schema's bound, above basic's 60,000
            editor.id, parameters={"pipeline": "basic", "topics": ["Too rich"], "budget": 60_001})
        final = wait_final(client, run.id)
        assert final.state.is_failed()
        assert "above the basic pipeline's cap of 60,000 tokens" in (final.state.message or "")
        assert len(served.fake.state.requests) == requests_before  # no call was made
        assert not served.out_dir.exists() or not [p for p in served.out_dir.iterdir()
                                                    if p.name.endswith(run.id.hex[:8])]

        def logged() -> str:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return "\n".join(log.message for log in logs if "may only lower it" in log.message)

        assert wait_for(logged, 20, "the refusal in the run's logs")

    def test_an_unknown_variable_fails_the_run_with_one_line_naming_the_known_ones(self, served, client):
        """The flow checks the vars again (a run started through the `editor` deployment's JSON box)."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        editor = client.read_deployment_by_name(EDITOR)
        requests_before = len(served.fake.state.requests)
        run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "basic", "topics": ["Misspelt", ""], "vars": {"audiance": "students"}})
        final = wait_final(client, run.id)
        assert final.state.is_failed()
        assert final.state.message == ("vars: unknown variable 'audiance' (this pipeline's variables: audience)")
        assert len(served.fake.state.requests) == requests_before

        def logged() -> list[Any]:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return logs if any("unknown variable" in log.message for log in logs) else []

        logs = wait_for(logged, 20, "the refusal in the run's logs")
        assert not any("Traceback" in log.message for log in logs), [log.message for log in logs]

    def test_a_form_budget_below_the_specs_cap_is_the_runs_cap(self, served, client):
        editor = client.read_deployment_by_name(EDITOR)
        run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "basic", "topics": ["Frugal"], "budget": 50_000})
        final = wait_final(client, run.id)
        assert final.state.is_completed(), final.state
        summary = json.loads((run_folder(served.out_dir, run.id) / "summary.json").read_text(encoding="utf-8"))
        assert summary["budget_limit"] == 50_000

    def test_editor_run_from_the_prefect_cli_exports_articles_and_leaves_artifacts(self, served, client,
                                                                                prefect_server):
        topics = ["Testing flows", "测试主题", "=cmd()"]
        started = time.monotonic()
        result = subprocess.run(
            prefect_command("deployment", "run", EDITOR, "--param", "pipeline=basic",
                            "--param", f"topics={json.dumps(topics, ensure_ascii=False)}",
                            "--param", 'vars={"audience": "editors"}',
                            "--watch", "--watch-timeout", "120"),
            env=base_env(PREFECT_API_URL=prefect_server), capture_output=True, text=True, timeout=180,
        )
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(f"editor run, triggered and watched from the Prefect CLI: {seconds:.1f} s")
        flow_run_id = flow_run_id_of(result.stdout)
        run = client.read_flow_run(flow_run_id)
        assert run.state.is_completed()

        run_dir = run_folder(served.out_dir, flow_run_id)
        frame = read_csv(run_dir)
        assert sorted(frame["topic"]) == sorted(["Testing flows", "测试主题", "'=cmd()"])
        assert set(frame["status"]) == {"published"}
        for path in frame["path"]:
            assert (run_dir / path).is_file() and path.startswith("published/")
        systems = [b["messages"][0]["content"] for b in served.fake.state.requests]
        assert systems.count("You write for editors in en-US.") == len(topics) * 6  # the vars override

        artifacts = artifacts_of(client, flow_run_id)
        by_key = {a.key: a for a in artifacts}
        assert by_key["basic-articles"].type == "table"
        table = by_key["basic-articles"].data
        table = json.loads(table) if isinstance(table, str) else table
        assert sorted(row["topic"] for row in table) == sorted(frame["topic"])
        summary = by_key["basic-run-summary"]
        assert summary.type == "markdown" and "tokens against the budget" in summary.data
        assert f"{int(frame['total_tokens'].sum()):,}" in summary.data and "| published | 3 |" in summary.data
        article_keys = {f"basic-{slug}" for slug in frame["slug"]}
        assert article_keys <= set(by_key)
        for key in article_keys:
            assert by_key[key].type == "markdown" and by_key[key].data.startswith("**published**")
        assert all(re.fullmatch(r"[a-z0-9-]+", a.key) for a in artifacts)
        assert not any(SECRET_KEY in str(a.data) for a in artifacts)
        assert SECRET_KEY not in served.log_text()

        metrics_url = re.search(r"metrics:\s+(http://127\.0\.0\.1:\d+/metrics)", served.log_text()).group(1)
        metrics = httpx.get(metrics_url, timeout=5).text
        prompt = [line for line in metrics.splitlines()
                  if line.startswith("copydesk_prompt_tokens_total{") and 'pipeline="basic"' in line]
        assert prompt and sum(float(line.rsplit(" ", 1)[1]) for line in prompt) >= frame["prompt_tokens"].sum()

    def test_review_pause_applies_the_editors_decisions(self, served, client):
        from prefect.client.schemas.responses import SetStateStatus

        editor = client.read_deployment_by_name(EDITOR)
        run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "strict", "topics": ["Needs an editor", "Also short"],
                                   "review_timeout": 120})
        paused = wait_for(lambda: (r := client.read_flow_run(run.id)).state.is_paused() and r, 90,
                          "the run to pause for review")
        keyset = paused.state.state_details.run_input_keyset
        assert keyset and keyset["schema"] == "paused-copydesk-review-schema"
        run_dir = run_folder(served.out_dir, run.id)
        frame = read_csv(run_dir)
        assert set(frame["status"]) == {"needs_review"}
        slugs = list(frame["slug"])
        schema = json.loads(wait_for(lambda: _run_input(client, run.id, keyset["schema"]), 20, "the review form"))
        assert set(schema["properties"]) == set(slugs)
        assert schema["properties"][slugs[0]]["enum"] == ["hold", "approve", "reject"]
        held = artifacts_of(client, run.id)
        assert any(a.key == f"strict-{slugs[0]}" and a.data.startswith("**needs_review**") for a in held)

        answer = client.resume_flow_run(run.id, run_input={slugs[0]: "approve", slugs[1]: "reject"})
        assert answer.status == SetStateStatus.ACCEPT, answer
        final = wait_final(client, run.id)
        assert final.state.is_completed(), final.state

        frame = read_csv(run_dir).set_index("slug")
        assert frame.loc[slugs[0], "status"] == "published"
        assert frame.loc[slugs[0], "path"] == f"published/{slugs[0]}.md"
        assert frame.loc[slugs[1], "status"] == "rejected"
        front = yaml.safe_load((run_dir / "published" / f"{slugs[0]}.md").read_text(encoding="utf-8").split("---\n")[1])
        assert front["status"] == "published" and front["review"]["decision"] == "approved"
        assert not (run_dir / "held" / f"{slugs[0]}.md").exists()
        latest = {}
        for artifact in artifacts_of(client, run.id):  # newest first
            latest.setdefault(artifact.key, artifact)
        assert latest[f"strict-{slugs[0]}"].data.startswith("**published**")
        assert latest[f"strict-{slugs[1]}"].data.startswith("**rejected**")
        assert "Review:** approved" in latest["strict-run-summary"].data

    def test_nobody_answers_the_review_the_run_completes_with_articles_held(self, served, client):
        editor = client.read_deployment_by_name(EDITOR)
        started = time.monotonic()
        run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "strict", "topics": ["Waits in vain"], "review_timeout": 3})
        final = wait_final(client, run.id)
        assert final.state.is_completed(), final.state
        print(f"run with a 3 s review timeout nobody answered: {time.monotonic() - started:.1f} s")
        run_dir = run_folder(served.out_dir, run.id)
        frame = read_csv(run_dir)
        assert list(frame["status"]) == ["needs_review"]
        assert (run_dir / frame.loc[0, "path"]).is_file() and frame.loc[0, "path"].startswith("held/")

    def test_a_pipeline_gone_since_serve_started_fails_the_run_with_the_names_that_exist(self, served, client):
        """The enum is taken when serve starts; the flow body checks the folder as it is now."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        editor = client.read_deployment_by_name(EDITOR)
        spec_file = served.pipelines / "strict-review.yml"
        parked = served.pipelines.parent / "strict-review.yml.parked"
        spec_file.rename(parked)
        try:
            run = client.create_flow_run_from_deployment(editor.id, parameters={"pipeline": "strict", "topics": ["x"]})
            final = wait_final(client, run.id)
        finally:
            parked.rename(spec_file)
        assert final.state.is_failed()
        assert "no pipeline named 'strict' is served" in (final.state.message or "")

        def logged() -> str:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            text = "\n".join(log.message for log in logs)
            return text if "no pipeline named" in text else ""

        text = wait_for(logged, 20, "the run's error in its logs")
        assert "no pipeline named 'strict' is served" in text and "available: basic" in text
        assert str(served.pipelines) not in text


def test_serve_without_a_prefect_server_says_how_to_get_one(tmp_path):
    with FakeOpenAI() as fake:
        serving = start_serve(None, tmp_path, fake, PREFECT_API_URL="")
        try:
            assert serving.proc.wait(60) == 2
        finally:
            stop_group(serving.proc)
    assert "copydesk server start" in serving.log_text() and "PREFECT_API_URL" in serving.log_text()


# ------------------------------------------------------------------------------ prefect.yaml and a work pool


def _prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def test_prefect_yaml_loads_with_prefects_own_model_and_matches_the_specs():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.utilities.importtools import import_object

    from copydesk.catalog import load_catalog

    model = PrefectYamlModel.model_validate(_prefect_yaml())
    deployments = {d.name: d for d in model.deployments}
    editor = deployments["editor"]
    assert editor.entrypoint == "flows/editor.py:editor" and editor.enforce_parameter_schema is True
    assert editor.work_pool.name == "copydesk-pool"
    for deployment in model.deployments:
        path, name = deployment.entrypoint.split(":")
        assert import_object(f"{path[:-3].replace('/', '.')}.{name}").name in ("copydesk-editor", "copydesk-scheduled")

    specs = {spec.name: spec for spec in load_catalog(ROOT / "pipelines").scheduled}
    assert specs, "pipelines/ has no scheduled example"
    scheduled = {n: d for n, d in deployments.items() if d.entrypoint == "flows/editor.py:scheduled"}
    assert set(scheduled) == set(specs)
    for name, deployment in scheduled.items():
        assert deployment.parameters["pipeline"] == name
        (schedule,) = deployment.schedules
        assert (schedule.cron, schedule.timezone) == (specs[name].schedule.cron, specs[name].schedule.timezone)
        assert deployment.work_pool.name == "copydesk-pool" and deployment.enforce_parameter_schema is True


def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_runs_the_editor(prefect_server, tmp_path, client):
    """The production shape: `prefect deploy --all` from this repo, a process worker, one editor run."""
    env = base_env(PREFECT_API_URL=prefect_server)
    pool = subprocess.run(prefect_command("work-pool", "create", "copydesk-pool", "--type", "process",
                                          "--overwrite"), env=env, capture_output=True, text=True, timeout=60)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    started = time.monotonic()
    deploy = subprocess.run(prefect_command("--no-prompt", "deploy", "--all"), env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    print(f"prefect deploy --all: {time.monotonic() - started:.1f} s")
    editor = client.read_deployment_by_name(EDITOR)
    assert editor.work_pool_name == "copydesk-pool" and editor.enforce_parameter_schema is True
    assert client.read_deployment_by_name("copydesk-scheduled/tech-blog").work_pool_name == "copydesk-pool"
    # each example pipeline's own form, as `copydesk serve` makes it (tests/test_prefect_yaml_forms.py: a team's)
    for name in ("tech-blog", "zh-tech-blog"):
        own = client.read_deployment_by_name(f"copydesk-editor/{name}")
        assert own.entrypoint == f"flows/forms.py:{name}" and own.enforce_parameter_schema is True
        assert "anyOf" not in json.dumps(own.parameter_openapi_schema)
        assert own.parameter_openapi_schema["properties"]["topics"]["type"] == "string"
    schema = client.read_deployment_by_name("copydesk-editor/tech-blog").parameter_openapi_schema
    (own_vars,) = schema["properties"]["vars"]["allOf"]
    assert own_vars["properties"]["tone"]["enum"] == ["practical", "playful", "formal"]

    with FakeOpenAI() as fake:
        pipelines = make_pipelines(tmp_path)
        out_dir = tmp_path / "worker-outputs"
        worker_env = base_env(PREFECT_API_URL=prefect_server, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET_KEY,
                              COPYDESK_PIPELINES_DIR=str(pipelines), COPYDESK_OUTPUT_DIR=str(out_dir),
                              PREFECT_WORKER_QUERY_SECONDS="1")
        log = tmp_path / "worker.log"
        with open(log, "wb") as handle:
            worker = subprocess.Popen(prefect_command("worker", "start", "--pool", "copydesk-pool", "--type", "process"),
                                      env=worker_env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            run = client.create_flow_run_from_deployment(
                editor.id, parameters={"pipeline": "basic", "topics": ["From a worker"], "review_timeout": 0})
            final = wait_final(client, run.id, timeout=120)
            assert final.state.is_completed(), (final.state, log.read_text()[-3000:])

            # prefect deploy writes the schema from the flow signature: its name pattern refuses
            # paths at the server; the flow body refuses a name the worker does not serve
            from prefect.exceptions import PrefectHTTPStatusError

            for path in ("../x", "/etc/passwd"):
                with pytest.raises(PrefectHTTPStatusError) as info:
                    client.create_flow_run_from_deployment(editor.id, parameters={"pipeline": path, "topics": ["x"]})
                assert info.value.response.status_code in (409, 422)
            requests_before = len(fake.state.requests)
            refused = client.create_flow_run_from_deployment(
                editor.id, parameters={"pipeline": "outside", "topics": ["x"], "review_timeout": 0})
            refused_final = wait_final(client, refused.id, timeout=120)
            assert refused_final.state.is_failed()
            assert "no pipeline named 'outside' is served" in (refused_final.state.message or "")
            assert len(fake.state.requests) == requests_before
        finally:
            stop_group(worker, grace=5)
        print(f"deploy + worker + one editor run: {time.monotonic() - started:.1f} s")
    frame = read_csv(run_folder(out_dir, run.id))
    assert list(frame["topic"]) == ["From a worker"] and list(frame["status"]) == ["published"]
    keys = {a.key for a in artifacts_of(client, run.id)}
    assert {"basic-articles", "basic-run-summary"} <= keys
