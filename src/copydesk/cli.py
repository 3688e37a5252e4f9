"""The `copydesk` command line.

Exit codes: 0 finished (whatever QC decided; some articles incomplete included: the
summary table shows how many and the first reason), 2 invalid input (a failed
preflight too: no chat call was made), 3 stopped by the budget (everything so far
exported), 4 the API refused the credentials, 1 any other failure, and a run that
produced nothing (every article incomplete, not for the budget). Only `run` and `serve` import Prefect, through copydesk.launch.

Each command imports the library modules it uses inside its own body: the command
line starts in ~0.15 s instead of ~3 s (pandas, the classifier, Prefect), and
`--help` or `validate` never pay for `run`'s machinery. These are the only
deliberate in-function imports of this layer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from copydesk import __version__, launch
from copydesk.console import err, fail, out, safe, warn
from copydesk.errors import CopydeskError, InputError
from copydesk.project import adopt_project_of
from copydesk.redact import install_log_redaction

if TYPE_CHECKING:
    from copydesk.spec import PipelineSpec

app = typer.Typer(
    name="copydesk",
    help="Generate articles from a YAML pipeline on Prefect, gated by grammar and moderation checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"copydesk {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print copydesk's version and exit.")] = False,
) -> None:
    pass


services_app = typer.Typer(help="Keep the embedded servers (local model, LanguageTool) running between runs.")
app.add_typer(services_app, name="services")

SpecArg = Annotated[Path, typer.Argument(help="Pipeline spec (YAML).", show_default=False)]
TopicOpt = Annotated[list[str] | None, typer.Option("--topic", "-t", help="A topic; repeat for more.")]
TopicsFileOpt = Annotated[Path | None, typer.Option("--topics-file", "-f", help="One topic per line (# comments).")]
BudgetOpt = Annotated[int | None, typer.Option("--budget", min=1, help="Overrides budget.max_total_tokens.")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="Override a variable the spec declares: NAME=VALUE (read as its type; JSON for json vars).")]


_fail = fail  # the commands' name for copydesk.console.fail


class Mode(str, Enum):
    realtime = "realtime"
    batch = "batch"
    auto = "auto"


ModeOpt = Annotated[Mode | None, typer.Option(
    "--mode", help="realtime calls, batch (the OpenAI Batch API: about half the price, within 24 h), or auto "
    "(batch where the server has a Batch API). Overrides the spec's mode.")]


def _topics(topics: list[str] | None, topics_file: Path | None) -> list[str]:
    from copydesk.request import clean_topics, read_topics_file

    collected = list(topics or [])
    if topics_file is not None:
        collected.extend(read_topics_file(topics_file))
    return clean_topics(collected)


def _vars(pairs: list[str] | None, spec: PipelineSpec | Path) -> dict[str, Any]:
    """`--var NAME=VALUE` pairs, each VALUE read as the type the spec (or the spec at that path)
    declares for NAME (`copydesk.specvars.parse_text`), then checked by `PipelineSpec.check_vars`:
    unknown names are refused naming the spec's variables (exit 2)."""
    from copydesk.spec import load_spec, short

    if not pairs:
        return {}
    spec = load_spec(spec) if isinstance(spec, Path) else spec
    result: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--var {short(pair)}: expected NAME=VALUE")
        result[name.strip()] = spec.var_from_text(name.strip(), value)
    return spec.check_vars(result, origin="--var")


#: seconds; see `run`
CALLS_FIRST_SWITCH_INTERVAL = 0.0002


def _prefect_environment() -> None:
    """Prefect's defaults for `run` (see copydesk.prefect_server.prefect_defaults), pointed at the
    server of `copydesk server start` when PREFECT_API_URL is unset."""
    from copydesk.prefect_server import prefect_defaults, use_local_server

    # each article's task run gets Prefect's INFO lines (its final state); the terminal shows warnings
    prefect_defaults(logging_level="INFO", console_level="WARNING")
    use_local_server(warn=lambda message: warn(safe(message)))


def _server_for_run() -> None:
    """`copydesk run` without PREFECT_API_URL: the local Prefect server, started on first use and
    left running (COPYDESK_KEEP_SERVERS=false: Prefect's temporary server for this run only)."""
    from copydesk.prefect_server import server_for_run

    chosen = server_for_run()
    if chosen.unprotected is not None:
        from copydesk.prefect_server import unprotected_notice

        warn(safe(unprotected_notice(chosen.unprotected)))
    if chosen.source == "started":
        err.print(f"started the local Prefect server (UI {safe(chosen.ui_url or chosen.api_url)}); it keeps "
                  "running for later runs: `copydesk server stop` stops it, COPYDESK_KEEP_SERVERS=false "
                  "runs without it", highlight=False)


def _require_shared_server(shared: Any) -> None:
    """budget.shared needs a real Prefect server (PREFECT_API_URL, the profile's, or `copydesk server start`)."""
    if shared is not None and not os.environ.get("PREFECT_API_URL"):
        from copydesk.allowance_admin import require_server

        require_server(shared, {"PREFECT_API_URL": launch.profile_api_url() or ""})


@app.command()
def validate(specs: Annotated[list[Path], typer.Argument(help="Pipeline specs to check.")]) -> None:
    """Load each spec and render every template against a sample context; no API call."""
    from copydesk.prompts import PromptLibrary
    from copydesk.spec import load_spec

    failed = 0
    if specs:
        adopt_project_of(specs[0])
    for path in specs:
        try:
            spec = load_spec(path)
            PromptLibrary(spec).render_samples()
        except CopydeskError as exc:
            failed += 1
            err.print(f"[red]invalid[/] {safe(exc)}", highlight=False, soft_wrap=True)
            continue
        out.print(f"[green]valid[/] {safe(path)} ({safe(spec.name)}, model {safe(spec.model)})", highlight=False)
    if failed:
        raise typer.Exit(2)


@app.command()
def plan(
    spec_path: SpecArg,
    topic: TopicOpt = None,
    topics_file: TopicsFileOpt = None,
    budget: BudgetOpt = None,
    var: VarOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    mode: ModeOpt = None,
) -> None:
    """Worst-case tokens per stage and in total for these topics, against the budget; no API call."""
    from copydesk.plan import make_plan
    from copydesk.spec import load_spec

    try:
        adopt_project_of(spec_path)
        spec = load_spec(spec_path)
        chosen = mode.value if mode else spec.mode
        result = make_plan(spec, _topics(topic, topics_file), budget=budget, overrides=_vars(var, spec),
                           mode="batch" if chosen == "batch" else "realtime")
    except CopydeskError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    batch = result.mode == "batch"
    table = Table(title=f"plan: {safe(spec.name)}, {result.topics} topic(s)" + (", batch mode" if batch else ""))
    columns = ["stage", "model", "calls", "max prompt", "max completion", "worst case",
               "est. USD (batch prices)" if batch else "est. USD"] + (["batch vs budget"] if batch else [])
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "model", "batch vs budget") else "right")
    for stage in result.stages.values():
        table.add_row(safe(stage.stage), safe(stage.model), str(stage.calls), f"{stage.max_prompt_tokens:,}",
                      f"{stage.max_completion_tokens:,}", f"{stage.worst_case_tokens:,}",
                      "?" if stage.est_cost_usd is None else f"{stage.est_cost_usd:.4f}",
                      *([stage.batch or ""] if batch else []))
    table.add_row("total", "", "", "", "", f"{result.worst_case_total_tokens:,}",
                  "?" if result.est_cost_usd is None else f"{result.est_cost_usd:.4f}", *([""] if batch else []))
    out.print(table)
    verdict = "fits within" if result.fits else "[yellow]exceeds[/]: the run would stop at"
    out.print(f"worst case {result.worst_case_total_tokens:,} tokens {verdict} the budget of {result.budget:,}")
    if batch:
        out.print("batch mode: each stage's batch is reserved whole before it is submitted: "
                  + ", ".join(f"{safe(s.stage)} {s.batch}" for s in result.stages.values())
                  + " (split: submitted in parts as the budget frees; refused: nothing would be sent)")


@app.command()
def run(
    spec_path: SpecArg,
    topic: TopicOpt = None,
    topics_file: TopicsFileOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for run folders [default: outputs/].")] = None,
    budget: BudgetOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, max=1024, help="API calls in flight at most.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name the run; the same id resumes it.")] = None,
    var: VarOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and copydesk's logs.")] = False,
    mode: ModeOpt = None,
) -> None:
    """Run the pipeline as a Prefect flow and export Markdown and CSV."""
    from copydesk.progress import LiveProgress, summary_table
    from copydesk.request import RunRequest
    from copydesk.runner import PipelineRun

    try:
        adopt_project_of(spec_path)  # its .copydesk/ keeps the servers' records, for this process and its children
    except CopydeskError as exc:
        raise _fail(exc) from None
    _prefect_environment()
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
    try:
        request = RunRequest(
            spec_path=str(spec_path),
            topics=_topics(topic, topics_file),
            out_dir=str(out_dir) if out_dir else None,
            run_id=run_id,
            budget=budget,
            concurrency=concurrency,
            vars=_vars(var, spec_path),
            mode=mode.value if mode else None,
        )
        prepared = PipelineRun.prepare(request)  # bad input fails here, before Prefect or any server starts
        _server_for_run()
        _require_shared_server(prepared.spec.budget.shared)
        if prepared.spec.budget.shared is not None:  # the operator's allowance, before any flow run or folder
            launch.check_shared_allowance(prepared.spec)
    except CopydeskError as exc:
        raise _fail(exc) from None

    logging.getLogger("copydesk").setLevel(logging.INFO if verbose else logging.WARNING)
    # The event loop makes the calls while worker threads import Prefect, build the gate and run
    # the checks: a thread waiting for the GIL gets it within 0.2 ms instead of Python's 5 ms, so each
    # socket read and write of a call no longer waits behind them (bench/README.md, issue 14).
    sys.setswitchinterval(CALLS_FIRST_SWITCH_INTERVAL)
    summary: dict[str, Any] | None = None
    try:
        with LiveProgress(err):
            summary = asyncio.run(launch.run_flow(request, prepared.spec))
    except CopydeskError as exc:
        summary = getattr(exc, "summary", None)
        if summary:
            out.print(summary_table(summary))
            out.print(f"articles so far: {safe(summary['run_dir'])}", highlight=False)
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished calls are kept; re-run with the same --run-id to resume")
        raise typer.Exit(130) from None
    out.print(summary_table(summary))
    out.print(f"articles: {safe(summary['run_dir'])}", highlight=False)
    if summary["stopped_by_budget"]:
        err.print(f"[yellow]stopped by the budget:[/] {safe(summary['budget_message'])}", highlight=False)
        if str(summary.get("budget_message") or "").startswith("shared allowance"):
            err.print("everything so far is exported; `copydesk budget status` shows when the allowance starts "
                      "again: re-run with the same --run-id then to finish")
        else:
            err.print("everything so far is exported; raise --budget and re-run with the same --run-id to finish")
    launch.exit_now(summary["exit_code"])  # Python's own finalization would take ~1 s more
    raise typer.Exit(summary["exit_code"])


@services_app.command("start")
def services_start() -> None:
    """Start the local model and LanguageTool in the background (reused by later runs)."""
    from copydesk.services.manager import start_services
    from copydesk.settings import Settings

    try:
        for status in start_services(Settings()):
            out.print(f"{safe(status.name)}: running at {safe(status.url)} (pid {status.pid})", highlight=False)
    except CopydeskError as exc:
        raise _fail(exc) from None


@services_app.command("stop")
def services_stop() -> None:
    """Stop the background servers started by `copydesk services start`."""
    from copydesk.services.manager import stop_services
    from copydesk.settings import Settings

    for status in stop_services(Settings()):
        out.print(f"{safe(status.name)}: stopped", highlight=False)


@services_app.command("status")
def services_status_cmd() -> None:
    """Show which embedded servers are running."""
    from copydesk.services.manager import services_status
    from copydesk.settings import Settings

    for status in services_status(Settings()):
        state = f"running at {safe(status.url)} (pid {status.pid})" if status.running else "stopped"
        out.print(f"{safe(status.name)}: {state}", highlight=False)


from copydesk.serve_cli import review as review_command  # noqa: E402
from copydesk.serve_cli import serve as serve_command  # noqa: E402
from copydesk.serve_cli import server_app  # noqa: E402
from copydesk.budget_cli import budget_app  # noqa: E402
from copydesk.setup_cli import init as init_command  # noqa: E402
from copydesk.setup_cli import setup as setup_command  # noqa: E402

app.command("init")(init_command)
app.command("setup")(setup_command)
app.command("serve")(serve_command)
app.command("review")(review_command)
app.add_typer(server_app, name="server")
app.add_typer(budget_app, name="budget")


def main() -> None:
    install_log_redaction()  # every log record of the process, whatever handler sends it on
    try:
        app()
    except CopydeskError as exc:  # pragma: no cover - commands translate their own
        err.print(f"error: {safe(exc)}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
