"""Screenshots of a finished `copydesk-run` flow run's task runs in the Prefect UI (docs/images/).

    python scripts/task_run_screenshots.py --ui http://127.0.0.1:4200 --flow-run <id> [--password ...]

Headless Debian chromium driven by Playwright, as tests/test_ui_browser.py does. Saves the flow
run's page (its graph of task runs), its Task Runs tab, and the first failed task run's page
(its state message and logs) as PNGs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", required=True)
    parser.add_argument("--flow-run", required=True)
    parser.add_argument("--failed-task-run", help="the task run to show on its own page")
    parser.add_argument("--password")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        if args.password:
            page.goto(args.ui)
            field = page.locator("input[type=password]")
            field.fill(args.password)
            field.press("Enter")
            field.wait_for(state="detached")
        page.goto(f"{args.ui}/runs/flow-run/{args.flow_run}")
        page.get_by_text("Task Runs", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(6000)  # the graph (a canvas) draws after the data arrives
        page.screenshot(path=str(args.out / "flow-run-task-runs-graph.png"))
        page.get_by_text("Task Runs", exact=True).first.click()
        page.get_by_text("write-article:").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "flow-run-task-runs-list.png"), full_page=True)
        if args.failed_task_run:
            page.goto(f"{args.ui}/runs/task-run/{args.failed_task_run}")
            page.get_by_text("Finished in state").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "task-run-failed-article.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
