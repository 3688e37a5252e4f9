"""A team's prefect.yaml gives each pipeline the same typed form as `copydesk serve`.

The way docs/several-machines.md tells a team: `copydesk init` a project, add a pipeline of
its own (a choice, a number, a switch) and its entry in prefect.yaml (entrypoint
`copydesk_flows.forms:<name>`), `prefect deploy` from the project folder against the real
Prefect server (conftest `prefect_server`), a process worker in the project folder. The
deployment's parameter schema is the pipeline's form (`copydesk.form.editor_schema`), the
server enforces it, and a run started with the form's values uses them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, SECRET_KEY
from fake_openai import FakeOpenAI
from test_deployments import (
    TYPED_VARS,
    base_env,
    copydesk_command,
    prefect_command,
    read_csv,
    run_folder,
    stop_group,
    wait_final,
)

pytestmark = pytest.mark.integration

POOL = "copydesk-pool"  # the pool a project's prefect.yaml names
ENTRY = """
  - name: typed
    entrypoint: copydesk_flows.forms:typed
    tags: [copydesk, editor, typed]
    parameters:
      review_timeout: 0
    enforce_parameter_schema: true
    work_pool: *copydesk_pool
"""


def _project(root: Path) -> Path:
    """`copydesk init`, then the team's own `typed` pipeline and its prefect.yaml entry."""
    project = root / "site"
    made = subprocess.run(copydesk_command("init", str(project)), env=base_env(), capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.copytree(FIXTURES / "prompts", project / "test-prompts")
    spec = yaml.safe_load((FIXTURES / "pipelines" / "basic.yaml").read_text(encoding="utf-8"))
    spec.update(name="typed", prompts_dir="../test-prompts", vars=TYPED_VARS, description="Short test articles.")
    (project / "pipelines" / "typed.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    declared = (project / "prefect.yaml").read_text(encoding="utf-8")
    assert "entrypoint: copydesk_flows.forms:tech-blog" in declared  # init's own pipelines have their forms
    (project / "prefect.yaml").write_text(declared.rstrip("\n") + "\n" + ENTRY, encoding="utf-8")
    return project


def test_a_projects_prefect_yaml_gives_its_pipeline_the_typed_form(prefect_server, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import PrefectHTTPStatusError

    from copydesk.form import editor_schema
    from copydesk.spec import load_spec

    project = _project(tmp_path)
    env = base_env(PREFECT_API_URL=prefect_server)
    pool = subprocess.run(prefect_command("work-pool", "create", POOL, "--type", "process", "--overwrite"),
                          env=env, capture_output=True, text=True, timeout=60)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    started = time.monotonic()
    deploy = subprocess.run(prefect_command("--no-prompt", "deploy", "--name", "typed"), env=env,
                            cwd=project, capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    print(f"prefect deploy (one pipeline form): {time.monotonic() - started:.1f} s")

    with SyncPrefectClient(prefect_server) as client:
        deployment = client.read_deployment_by_name("copydesk-editor/typed")
        assert deployment.work_pool_name == POOL and deployment.enforce_parameter_schema is True
        assert deployment.entrypoint == "copydesk_flows.forms:typed" and "60,000" in deployment.description
        schema = deployment.parameter_openapi_schema
        expected = editor_schema(load_spec(project / "pipelines" / "typed.yaml"))
        assert schema["properties"] == expected["properties"] and schema["required"] == ["topics"]
        props = schema["properties"]
        (fields,) = props["vars"]["allOf"]
        variables = fields["properties"]
        assert variables["audience"]["enum"] == ["testers", "students", "editors"]  # a dropdown
        assert variables["words"]["type"] == "integer" and variables["formal"]["type"] == "boolean"
        assert fields["additionalProperties"] is False
        assert props["budget"]["allOf"] == [{"type": "integer", "minimum": 1, "maximum": 60_000}]
        assert props["topics"]["type"] == "string" and props["mode"]["enum"][0] == "as the spec says"
        text = json.dumps(schema)
        assert "anyOf" not in text and '"default": null' not in text  # no `X | None` switch anywhere

        for bad in ({"topics": "a", "budget": 60_001}, {"topics": "a", "vars": {"audiance": "students"}},
                    {"topics": "a", "vars": {"words": "many"}}, {"topics": ""}):
            with pytest.raises(PrefectHTTPStatusError) as info:
                client.create_flow_run_from_deployment(deployment.id, parameters=bad)
            assert info.value.response.status_code in (409, 422), bad

        final, _ = _run_with_a_worker(client, deployment.id, project, prefect_server, tmp_path)
    frame = read_csv(run_folder(project / "outputs", final.id))
    assert list(frame["topic"]) == ["From the team's form", "Second line"] and set(frame["status"]) == {"published"}


def _run_with_a_worker(client: Any, deployment_id: Any, project: Path, api_url: str, tmp_path: Path) -> tuple[Any, str]:
    """One run of the form with its values, by a process worker in the project folder (which
    finds the pipelines and outputs there, as a team's worker does)."""
    with FakeOpenAI() as fake:
        worker_env = base_env(PREFECT_API_URL=api_url, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET_KEY,
                              PREFECT_WORKER_QUERY_SECONDS="1")
        log = tmp_path / "worker.log"
        with open(log, "wb") as handle:
            worker = subprocess.Popen(prefect_command("worker", "start", "--pool", POOL, "--type", "process"),
                                      env=worker_env, cwd=project, stdout=handle, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            run = client.create_flow_run_from_deployment(deployment_id, parameters={
                "topics": "From the team's form\n\n  \nSecond line\n", "vars": {"audience": "students", "words": 900},
                "review_timeout": 0})
            final = wait_final(client, run.id, timeout=120)
        finally:
            stop_group(worker, grace=5)
        systems = {r["messages"][0]["content"] for r in fake.state.requests}
    text = log.read_text(encoding="utf-8", errors="replace")
    assert final.state.is_completed(), (final.state, text[-3000:])
    assert systems == {"You write for students in en-US."}, systems  # the run used the form's choice
    return final, text
