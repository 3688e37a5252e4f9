"""`copydesk serve`, `copydesk review` and `copydesk server start|stop|status|env|password`.

Registered on the main Typer app by copydesk.cli. Prefect is imported only
by `serve`, through copydesk.launch, never at module level.

Each command imports the library modules it uses inside its own body: the command
line starts in ~0.15 s instead of ~3 s (pandas, the classifier, Prefect), and
`--help` or `validate` never pay for `run`'s machinery. These are the only
deliberate in-function imports of this layer.

    copydesk server start     a local Prefect server (API + UI) on 127.0.0.1, telemetry off, a password
    copydesk server password  the password the UI asks for (printed only on this request)
    copydesk serve            the editor and scheduled deployments, served to PREFECT_API_URL,
                              plus /metrics on COPYDESK_METRICS_PORT
    copydesk review RUN_DIR   approve or reject needs_review articles without the UI
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from copydesk import launch
from copydesk.console import err, fail, out, safe, warn
from copydesk.errors import CopydeskError, InputError

server_app = typer.Typer(
    help="A local Prefect server (API and UI) on 127.0.0.1 for copydesk run and serve.",
    no_args_is_help=True,
)




# ------------------------------------------------------------------------------ copydesk serve


def serve(
    pipelines_dir: Annotated[
        Path | None,
        typer.Option("--pipelines", help="Folder of pipeline specs (default: COPYDESK_PIPELINES_DIR or pipelines/)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where served runs export (default: COPYDESK_OUTPUT_DIR or outputs/)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="Port of /metrics (0: any free port) (default: COPYDESK_METRICS_PORT or 9464)."),
    ] = None,
    review_timeout: Annotated[
        int,
        typer.Option("--review-timeout", min=0,
                     help="Seconds a scheduled run waits, paused, for an editor's review decisions (0: never waits)."),
    ] = 3600,
    editor_review_timeout: Annotated[
        int,
        typer.Option("--editor-review-timeout", min=0,
                     help="Default of the editor form's review_timeout (0: runs do not wait unless the editor asks)."),
    ] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Flow runs at once, at most (default: no limit).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse to start when a spec in the folder is invalid.")
    ] = False,
) -> None:
    """Serve the `editor` deployment and one scheduled deployment per spec with a schedule: block."""
    settings, pipelines, outputs, shown_api = _serve_setup(pipelines_dir, out_dir, metrics_port)
    if not pipelines.is_dir():
        raise fail(InputError(f"{pipelines}: the pipelines folder does not exist (COPYDESK_PIPELINES_DIR)"))
    outputs.mkdir(parents=True, exist_ok=True)

    try:
        plan = launch.build_deployments(settings, review_timeout=review_timeout, editor_review_timeout=editor_review_timeout)
    except CopydeskError as exc:
        raise fail(exc) from None
    for problem in plan.problems:
        err.print(f"[yellow]skipped:[/] {safe(problem)}", highlight=False, soft_wrap=True)
    if plan.problems and strict:
        raise typer.Exit(2)

    metrics_url = _start_metrics(settings.metrics_port, outputs)
    table = Table(title=f"copydesk serve → {safe(shown_api)}")
    table.add_column("deployment")
    table.add_column("runs")
    for name, what in plan.described:
        table.add_row(safe(name), safe(what))
    out.print(table)
    out.print(f"pipelines: {safe(pipelines)}\noutputs:   {safe(outputs)}", highlight=False)
    if metrics_url:
        out.print(f"metrics:   {safe(metrics_url)}", highlight=False)
    out.print(
        "start a run: in the UI, Deployments -> the pipeline's name -> Run -> Custom run; or "
        "prefect deployment run 'copydesk-editor/NAME' --param topics='[\"...\"]'; Ctrl-C stops serving",
        highlight=False,
    )
    sys.stdout.flush()

    launch.serve_deployments(plan.deployments, limit=limit)


def _serve_setup(pipelines_dir: Path | None, out_dir: Path | None, metrics_port: int | None
                 ) -> tuple[Any, Path, Path, str]:
    """The settings `copydesk serve` runs with; its pipelines and outputs folders, resolved and exported
    (the served runs are subprocesses that read them from the environment); and the Prefect API it
    serves on as shown (the local server when one runs, else the profile's), checked to answer and to
    take the credentials."""
    from copydesk.client import public_url
    from copydesk.prefect_server import prefect_defaults, use_local_server
    from copydesk.settings import Settings

    prefect_defaults(logging_level="INFO")
    # Prefect's runner looks for new runs every 10 s by default; an editor pressing Run waits less at 5 s.
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "5")
    if pipelines_dir is not None:
        os.environ["COPYDESK_PIPELINES_DIR"] = str(pipelines_dir)
    if out_dir is not None:
        os.environ["COPYDESK_OUTPUT_DIR"] = str(out_dir)
    if metrics_port is not None:
        os.environ["COPYDESK_METRICS_PORT"] = str(metrics_port)
    settings = Settings()
    pipelines = settings.pipelines_dir.resolve()
    outputs = settings.output_dir.resolve()
    os.environ["COPYDESK_PIPELINES_DIR"] = str(pipelines)
    os.environ["COPYDESK_OUTPUT_DIR"] = str(outputs)

    api_url = use_local_server(settings, warn=lambda message: warn(safe(message))) or _profile_api_url()
    if not api_url:
        raise fail(InputError(
            "no Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) "
            "or start one with `copydesk server start`"
        ))
    answer = _api_answers(api_url)
    if answer is None:
        raise fail(CopydeskError(f"the Prefect API at {public_url(api_url)} does not answer (PREFECT_API_URL)"))
    if not answer:
        raise fail(CopydeskError(
            f"the Prefect API at {public_url(api_url)} refused the credentials: set PREFECT_API_AUTH_STRING "
            "(for the local server: eval \"$(copydesk server env)\")"))
    return settings, pipelines, outputs, public_url(api_url)


def _profile_api_url() -> str | None:
    """PREFECT_API_URL from the active Prefect profile (`prefect config set PREFECT_API_URL=...`)."""
    return launch.profile_api_url()


def _api_answers(api_url: str) -> bool | None:
    """None: the API does not answer; False: it refuses this process's credentials (401/403 on
    an authenticated endpoint, /admin/version, which the UI's login checks too); True: both fine."""
    import httpx

    headers = {}
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    base = api_url.rstrip("/")
    try:
        if not httpx.get(f"{base}/health", timeout=5, headers=headers).is_success:
            return None
        return httpx.get(f"{base}/admin/version", timeout=5, headers=headers).status_code not in (401, 403)
    except httpx.HTTPError:
        return None


def _start_metrics(port: int, outputs: Path) -> str | None:
    """/metrics over the cumulative file every run adds to (runs are subprocesses)."""
    from copydesk.metrics import CUMULATIVE_TEXTFILE, serve_metrics, textfile_registry

    try:
        server = serve_metrics(port, textfile_registry(outputs / CUMULATIVE_TEXTFILE))
    except OSError as exc:
        warn(
            f"/metrics could not listen on 127.0.0.1:{port} ({safe(exc.strerror)}); "
            "serving without it (choose a port with --metrics-port or COPYDESK_METRICS_PORT)"
        )
        return None
    return f"http://127.0.0.1:{server.server_port}/metrics"


# ------------------------------------------------------------------------------ copydesk review


def review(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (outputs/<run id>).", show_default=False)],
    approve: Annotated[list[str] | None, typer.Option("--approve", "-a", help="Slug to publish; repeat for more.")] = None,
    reject: Annotated[list[str] | None, typer.Option("--reject", "-r", help="Slug to reject; repeat for more.")] = None,
    reviewer: Annotated[str | None, typer.Option("--by", help="Who decided (recorded in the front matter).")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (recorded in the front matter).")] = None,
) -> None:
    """Approve or reject a run's needs_review articles; without --approve/--reject, list them."""
    from copydesk.review import apply_review, pending_reviews

    try:
        if not approve and not reject:
            pending = pending_reviews(run_dir)
            if not pending:
                out.print(f"nothing waits for review in {safe(run_dir)}", highlight=False)
                return
            table = Table(title=f"needs review: {safe(run_dir)}")
            for column in ("slug", "title", "reasons", "path"):
                table.add_column(column)
            for item in pending:
                table.add_row(safe(item.slug), safe(item.title), safe(item.reasons), safe(item.path))
            out.print(table)
            return
        outcome = apply_review(run_dir, approve=approve or [], reject=reject or [],
                               reviewer=reviewer or os.environ.get("USER"), note=note)
    except CopydeskError as exc:
        raise fail(exc) from None
    for slug in outcome.approved:
        out.print(f"[green]published[/] {safe(slug)}", highlight=False)
    for slug in outcome.rejected:
        out.print(f"[red]rejected[/] {safe(slug)}", highlight=False)
    for slug in outcome.unchanged:
        out.print(f"unchanged {safe(slug)}", highlight=False)
    if outcome.pending:
        out.print(f"still waiting: {safe(', '.join(outcome.pending))}", highlight=False)


# ------------------------------------------------------------------------------ copydesk server


@server_app.command("start")
def server_start(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 4200,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve the web UI too.")] = True,
) -> None:
    """Start a Prefect server on 127.0.0.1 in the background (telemetry off, a password) and print
    the lines a shell needs to use it."""
    from copydesk.prefect_server import auth_export_line, start_server
    from copydesk.settings import Settings

    settings = Settings()
    try:
        state, started, replaced = start_server(settings, port=port, ui=ui)
    except CopydeskError as exc:
        raise fail(exc) from None
    if replaced is not None:
        err.print(f"replaced the Prefect server without a password (pid {replaced.pid}) started by an older "
                  "copydesk", highlight=False)
    verb = "started" if started else "already running"
    err.print(f"Prefect server {verb} (pid {state.pid}); log: {safe(state.log_path)}", highlight=False)
    if state.ui:
        err.print(f"UI: {safe(state.ui_url)}  (it asks for the password: `copydesk server password` prints it)",
                  highlight=False)
    err.print("copydesk run/serve/budget use it automatically; other Prefect tools and workers need "
              "(eval \"$(copydesk server env)\"):", highlight=False)
    print(f"export PREFECT_API_URL={state.api_url}")
    if line := auth_export_line(settings):
        print(line)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the server started by `copydesk server start`."""
    from copydesk.prefect_server import stop_server
    from copydesk.settings import Settings

    try:
        state = stop_server(Settings())
    except CopydeskError as exc:
        raise fail(exc) from None
    out.print(f"Prefect server stopped (pid {state.pid})" if state else "no Prefect server was running",
              highlight=False)


@server_app.command("status")
def server_status() -> None:
    """Show whether the local Prefect server runs, and where. Exit 1 when it does not."""
    from copydesk.prefect_server import auth_path, running_server, unprotected_notice
    from copydesk.settings import Settings

    settings = Settings()
    state = running_server(settings)
    if state is None:
        out.print("Prefect server: not running (start it with `copydesk server start`)")
        raise typer.Exit(1)
    out.print(f"Prefect server: running (pid {state.pid}) API {safe(state.api_url)}"
              + (f" UI {safe(state.ui_url)}" if state.ui else ""), highlight=False)
    if state.auth:
        where = ("your PREFECT_SERVER_API_AUTH_STRING" if os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
                 else f"kept in {auth_path(settings)}, readable by you only")
        out.print(f"password: required ({safe(where)}); `copydesk server password` prints it for the UI's "
                  "login, `copydesk server env` the lines for a shell", highlight=False)
    else:
        warn(safe(unprotected_notice(state)))


@server_app.command("env")
def server_env() -> None:
    """Print the `export` lines for the running local server: eval "$(copydesk server env)".

    The password is not printed: the line reads it from its 0600 file when the shell runs it."""
    from copydesk.prefect_server import auth_export_line, running_server, unprotected_notice
    from copydesk.settings import Settings

    settings = Settings()
    state = running_server(settings)
    if state is None:
        err.print("Prefect server: not running (start it with `copydesk server start`)")
        raise typer.Exit(1)
    print(f"export PREFECT_API_URL={state.api_url}")
    if not state.auth:
        warn(safe(unprotected_notice(state)))
    elif line := auth_export_line(settings):
        print(line)


@server_app.command("password")
def server_password() -> None:
    """Print the local server's auth string ("copydesk:..."), which the UI's login asks for.

    Printed only when asked for: paste it into the UI's password field, whole."""
    from copydesk.prefect_server import server_auth_string
    from copydesk.settings import Settings

    auth = server_auth_string(Settings())
    if auth is None:
        err.print("no password yet: `copydesk server start` makes one")
        raise typer.Exit(1)
    if sys.stdout.isatty():
        err.print("the UI's login: paste this whole line into its password field", highlight=False)
    print(auth)


# ------------------------------------------------------------------------------ standalone


def standalone_app() -> typer.Typer:
    """These commands on their own (`python -m copydesk.serve_cli ...`), as copydesk.cli registers them."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    app.command()(serve)
    app.command()(review)
    app.add_typer(server_app, name="server")
    return app


if __name__ == "__main__":
    standalone_app()()
