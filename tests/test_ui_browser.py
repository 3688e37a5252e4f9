"""End to end in a real browser: the Prefect UI (headless Debian chromium, driven by
Playwright) starts an `editor` run from its form (the pipeline picked from a dropdown of
the served pipelines) and sees it complete; an editor fills a pipeline's own form (its
variables as typed fields: a dropdown, a number field, a switch; the budget bounded by the
pipeline's cap in the form itself) and the run uses the values.

The Prefect server here is the one `copydesk server start` starts (UI on, 127.0.0.1, a
database of its own under the test's state folder, a password), and `copydesk serve` finds
it without PREFECT_API_URL. The browser logs in the way an editor does: the UI asks for
the password, and the editor types what `copydesk server password` prints. The test saves
screenshots of the form and of the completed run in its temporary folder (and in
$COPYDESK_SCREENSHOT_DIR when that is set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET_KEY
from fake_openai import FakeOpenAI
from test_deployments import (
    EDITOR,
    TYPED_VARS,
    Served,
    artifacts_of,
    base_env,
    copydesk_command,
    read_csv,
    review_form_ready,
    run_folder,
    start_serve,
    stop_group,
    wait_for,
    wait_for_deployments,
)

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
TYPED_FORM = "copydesk-editor/typed"
#: Where the pipeline form's screenshot is kept for the manual (docs/prefect-ui.md).
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _local_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = base_env(COPYDESK_STATE_DIR=str(state_dir), **extra)
    env.pop("PREFECT_API_URL", None)  # found through `copydesk server start`'s record
    return env


@pytest.fixture(scope="module")
def local_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Served, str]]:
    """`copydesk server start` (UI on), `copydesk serve` against it, and `copydesk server stop` at the end."""
    root = tmp_path_factory.mktemp("ui")
    state = root / "state"
    env = _local_env(state)
    env.pop("PREFECT_HOME", None)  # the server keeps its database under the state folder
    started = time.monotonic()
    start = subprocess.run(copydesk_command("server", "start", "--port", "0"), env=env, cwd=root,
                           capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    api_url = re.search(r"^export PREFECT_API_URL=(\S+)$", start.stdout, re.MULTILINE).group(1)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", api_url)
    print(f"copydesk server start: {time.monotonic() - started:.1f} s")
    shown = subprocess.run(copydesk_command("server", "password"), env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    password = shown.stdout.strip()
    try:
        status = subprocess.run(copydesk_command("server", "status"), env=env, capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0 and api_url in status.stdout, status.stdout + status.stderr
        with FakeOpenAI() as fake:
            serving = start_serve(None, root, fake, typed=True)  # its state folder is root/state too
            try:
                from prefect.client.orchestration import SyncPrefectClient

                with SyncPrefectClient(api_url, auth_string=password) as client:
                    wait_for_deployments(serving, client, [EDITOR, TYPED_FORM])
                assert api_url in serving.log_text()  # serve found the local server (and its password) by itself
                yield api_url, serving, password
            finally:
                stop_group(serving.proc)
    finally:
        stop = subprocess.run(copydesk_command("server", "stop"), env=env, capture_output=True, text=True,
                              timeout=60)
        assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
        after = subprocess.run(copydesk_command("server", "status"), env=env, capture_output=True, text=True,
                               timeout=60)
        assert after.returncode == 1 and "not running" in after.stdout


def _login(page: Any, ui_url: str, password: str) -> None:
    """The UI's login page (it asks for the password before anything else), as an editor uses it."""
    page.goto(ui_url)
    field = page.locator("input[type=password]")
    field.fill(password)
    field.press("Enter")
    page.wait_for_function("() => !!localStorage.getItem('prefect-password')")  # where the UI keeps it
    field.wait_for(state="detached")  # past the login page


def _screenshot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("COPYDESK_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    print(f"screenshot: {path}")


def test_an_editor_starts_a_run_from_the_ui_form_and_sees_it_complete(local_ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    from prefect.client.orchestration import SyncPrefectClient

    api_url, served, password = local_ui
    ui_url = api_url.removesuffix("/api")
    run_name = f"ui-test-{int(time.time())}"
    topics = ["Browser topic one", "浏览器测试"]
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)

            def field(name: str) -> Any:
                label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{name}( \(Optional\))?$"))
                return page.locator(".schema-form-property").filter(has=label)

            _login(page, ui_url, password)
            page.goto(f"{ui_url}/deployments")
            page.get_by_role("link", name="editor", exact=True).click()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            expect(field("topics")).to_be_visible()
            page.locator("input").first.fill(run_name)  # the Run Name field
            # `pipeline` is a dropdown of the served pipelines (outside.yaml, a symlink out of the
            # folder, and broken.yaml are not among them); nothing can be typed into it
            select = field("pipeline").locator("button.p-select-button__control")
            expect(field("pipeline").locator("textarea, input[type=text]")).to_have_count(0)
            select.press("ArrowDown")  # opens the choices (a mouse click only focuses it headless)
            expect(page.get_by_role("option")).to_have_text(["basic", "strict", "typed"])
            _screenshot(page, tmp_path / "editor-pipeline-dropdown.png")
            page.get_by_role("option", name="basic", exact=True).click()
            expect(select).to_have_text("basic")
            for index, topic in enumerate(topics):
                field("topics").get_by_role("button", name="Add item").click()
                field("topics").locator("textarea").nth(index).fill(topic)
            field("review_timeout").locator("input").fill("0")
            _screenshot(page, tmp_path / "editor-form.png")
            page.get_by_role("button", name="Submit").click()

            # the flow run is created, then the deployment's runs show (slow on a busy machine)
            _open_new_run(page, run_name)
            expect(page.locator(".p-bread-crumbs", has_text=run_name)).to_be_visible()
            badge = page.locator(".page-heading-flow-run__meta .state-badge")
            expect(badge).to_have_text(re.compile("Completed"), timeout=120_000)
            page.get_by_role("tab", name="Artifacts").or_(page.get_by_text("Artifacts", exact=True)).first.click()
            expect(page.get_by_text("basic-run-summary").first).to_be_visible()
            _screenshot(page, tmp_path / "editor-run-completed.png")
            flow_run_id = page.url.rstrip("/").split("/runs/flow-run/")[1].split("?")[0]
        finally:
            browser.close()
    print(f"UI: form filled, run started and seen Completed in {time.monotonic() - started:.1f} s")

    import uuid

    with SyncPrefectClient(api_url, auth_string=password) as client:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
        assert run.name == run_name and run.state.is_completed()
        assert run.parameters["pipeline"] == "basic" and run.parameters["topics"] == topics
        keys = {a.key for a in artifacts_of(client, run.id)}
    assert {"basic-articles", "basic-run-summary"} <= keys
    frame = read_csv(run_folder(served.out_dir, run.id))
    assert sorted(frame["topic"]) == sorted(topics) and set(frame["status"]) == {"published"}
    assert SECRET_KEY not in served.log_text()


def test_an_editor_approves_and_rejects_articles_in_the_paused_runs_form(local_ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    from prefect.client.orchestration import SyncPrefectClient

    api_url, served, password = local_ui
    with SyncPrefectClient(api_url, auth_string=password) as client:
        editor = client.read_deployment_by_name(EDITOR)
        run = client.create_flow_run_from_deployment(
            editor.id, parameters={"pipeline": "strict", "topics": ["Short one", "Short two"], "review_timeout": 180})
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(30_000)
            _login(page, api_url.removesuffix("/api"), password)
            page.goto(f"{api_url.removesuffix('/api')}/runs/flow-run/{run.id}")
            badge = page.locator(".page-heading-flow-run__meta .state-badge")
            expect(badge).to_have_text(re.compile("Paused"), timeout=90_000)
            with SyncPrefectClient(api_url, auth_string=password) as client:  # the pause saves its form just after pausing
                wait_for(lambda: review_form_ready(client, run.id), 20, "the review form")
            frame = read_csv(run_folder(served.out_dir, run.id))
            first, second = list(frame["slug"])
            page.get_by_role("button", name=re.compile("Resume")).click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("2 article(s) need an editor")).to_be_visible()
            for slug, choice in ((first, "approve"), (second, "reject")):
                label = page.locator(".schema-form-property__label", has_text=f"({slug})")
                select = dialog.locator(".schema-form-property").filter(has=label).locator("button.p-select-button__control")
                select.press("ArrowDown")  # opens the choices (a mouse click only focuses it headless)
                page.get_by_role("option", name=choice, exact=True).click()
                expect(select).to_have_text(choice)
            _screenshot(page, tmp_path / "review-form.png")
            dialog.get_by_role("button", name="Submit").click()
            expect(badge).to_have_text(re.compile("Completed"), timeout=60_000)
            _screenshot(page, tmp_path / "review-completed.png")
        finally:
            browser.close()
    print(f"UI review: paused run found, decided and seen Completed in {time.monotonic() - started:.1f} s")

    run_dir = run_folder(served.out_dir, run.id)
    frame = read_csv(run_dir).set_index("slug")
    assert frame.loc[first, "status"] == "published" and frame.loc[first, "path"] == f"published/{first}.md"
    assert frame.loc[second, "status"] == "rejected" and (run_dir / "held" / f"{second}.md").is_file()
    assert "approved by prefect-ui" in frame.loc[first, "reasons"]


def _open_new_run(page: Any, run_name: str) -> None:
    """After Submit: the deployment's runs list (it refreshes on its own clock), then the run's page."""
    page.wait_for_url(re.compile(r"/deployment/[^/?]+(\?tab=Runs)?$"), timeout=90_000)
    link = page.get_by_role("link", name=run_name, exact=True)
    deadline = time.monotonic() + 60
    while not link.count():
        assert time.monotonic() < deadline, "the new run never showed in the deployment's runs"
        page.wait_for_timeout(1000)
        page.reload()
        page.wait_for_load_state("networkidle")
    link.first.click()
    page.wait_for_url(re.compile(r"/runs/flow-run/"))


def test_an_editor_fills_a_pipelines_own_form_and_the_run_uses_the_values(local_ui, tmp_path):
    """The `typed` pipeline's own deployment: its description and cap in the form, its variables
    as typed fields with their descriptions, no `X | None` switch, the budget refused above the cap
    by the form itself, the topics box typed into and cleared (then refused plainly as empty, never
    as "None is not of type"), then filled with one topic and an empty line, which is dropped; the
    articles are written for the chosen audience."""
    import json
    import uuid

    from playwright.sync_api import expect, sync_playwright
    from prefect.client.orchestration import SyncPrefectClient

    api_url, served, password = local_ui
    ui_url = api_url.removesuffix("/api")
    run_name = f"typed-form-{int(time.time())}"
    with SyncPrefectClient(api_url, auth_string=password) as client:
        deployment = client.read_deployment_by_name(TYPED_FORM)
    requests_before = len(served.fake.state.requests)
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.set_default_timeout(30_000)

            def field(name: str) -> Any:  # the innermost form property with this label
                label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{name}( \(Optional\))?$"))
                return page.locator(".schema-form-property").filter(has=label).last

            _login(page, ui_url, password)
            page.goto(f"{ui_url}/deployments/deployment/{deployment.id}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            expect(field("Topics")).to_contain_text("Short test articles for whoever reads them.")
            page.locator("input").first.fill(run_name)  # the Run Name field
            expect(page.get_by_text('Property is type "None"')).to_have_count(0)
            expect(page.locator(".schema-form-property__label", has_text=re.compile(r"^pipeline"))).to_have_count(0)

            audience = field("Audience").locator("button.p-select-button__control")
            expect(field("Audience")).to_contain_text(TYPED_VARS["audience"]["description"])
            expect(audience).to_have_text("testers")
            audience.press("ArrowDown")  # opens the choices (a mouse click only focuses it headless)
            expect(page.get_by_role("option")).to_have_text(["testers", "students", "editors"])
            page.get_by_role("option", name="students", exact=True).click()
            expect(audience).to_have_text("students")
            words = field("Words").locator("input[type=number]")
            expect(words).to_have_value("600")
            words.fill("900")
            switch = field("Formal").locator("[role=switch]")
            expect(switch).to_have_count(1)
            switch.click()
            expect(field("Mode").locator("button.p-select-button__control")).to_have_text("as the spec says")

            # the topics are one text box, a topic per line: typed into, then cleared, it is left out
            # (the Prefect UI sends a cleared list row as null: "None is not of type 'string'")
            topics = field("Topics").locator("textarea")
            expect(topics).to_have_count(1)
            topics.fill("A topic the editor changes their mind about")
            topics.fill("")

            budget = field("Token budget").locator("input")
            expect(field("Token budget")).to_contain_text("at most 60,000")
            budget.fill("100000")
            page.get_by_role("button", name="Submit").click()  # the form itself refuses more than the cap
            expect(field("Token budget")).to_contain_text("100000 is greater than the maximum of 60000")
            expect(field("Topics")).to_contain_text("required")  # the cleared box: no topic yet, said plainly
            expect(page.get_by_text(re.compile("is not of type"))).to_have_count(0)
            assert "/run" in page.url
            topics.fill("Typed form topic\n\n")  # a spare empty line, left out too
            _screenshot(page, tmp_path / "pipeline-form.png")
            if os.environ.get("COPYDESK_UPDATE_SCREENSHOTS") == "1":  # the manual's picture (docs/prefect-ui.md)
                shutil.copy(tmp_path / "pipeline-form.png", DOCS_IMAGES / "pipeline-form.png")
            budget.fill("50000")
            page.get_by_role("button", name="Submit").click()

            _open_new_run(page, run_name)
            badge = page.locator(".page-heading-flow-run__meta .state-badge")
            expect(badge).to_have_text(re.compile("Completed"), timeout=120_000)
            flow_run_id = uuid.UUID(page.url.rstrip("/").split("/runs/flow-run/")[1].split("?")[0])
            page.get_by_role("tab", name="Artifacts").or_(page.get_by_text("Artifacts", exact=True)).first.click()
            expect(page.get_by_text("typed-articles").first).to_be_visible()
            _screenshot(page, tmp_path / "pipeline-form-run.png")
        finally:
            browser.close()
    print(f"UI: a pipeline's own form filled, submitted and seen Completed in {time.monotonic() - started:.1f} s")

    with SyncPrefectClient(api_url, auth_string=password) as client:
        run = client.read_flow_run(flow_run_id)
    assert run.deployment_id == deployment.id and run.parameters["budget"] == 50_000
    assert run.parameters["topics"].strip() == "Typed form topic"
    assert run.parameters["vars"] == {"audience": "students", "words": 900, "formal": True}
    run_dir = run_folder(served.out_dir, run.id)
    assert list(read_csv(run_dir)["topic"]) == ["Typed form topic"]  # the cleared text and the empty line: no topic
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["budget_limit"] == 50_000
    systems = {b["messages"][0]["content"] for b in served.fake.state.requests[requests_before:]}
    assert systems == {"You write for students in en-US."}  # the rendered prompt used the form's choice
