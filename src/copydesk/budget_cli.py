"""`copydesk budget create|set|status|reset`: shared allowances (budget.shared) held by the Prefect server.

A shared allowance belongs to the operator: `create` records it (limit, period, timezone),
`set` changes it, `reset` starts its current period again; specs only name it
(copydesk.allowance_admin). Each change is printed and appended to
STATE_DIR/logs/budget-changes.log (resets: budget-resets.log). Options are checked
before the server is asked (exit 2 naming the option). Reaches Prefect only through
copydesk.launch. The server is PREFECT_API_URL, or the one `copydesk server start`
started; without either there is nothing to show (exit 2).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from copydesk import launch
from copydesk.console import err, fail, out, safe, warn
from copydesk.errors import CopydeskError, InputError
from copydesk.private import open_private, private_dir

budget_app = typer.Typer(help="Shared allowances (budget.shared) held by the Prefect server.", no_args_is_help=True)

log = logging.getLogger("copydesk.allowance")

NameArg = Annotated[str, typer.Argument(help="The allowance's name (budget.shared.name).", show_default=False)]
PERIOD_HELP = "day, week (from Monday), month or total: when the allowance starts again, at 00:00 in --timezone."
TIMEZONE_HELP = "IANA time zone of the period's midnight, e.g. Europe/Berlin."
MAX_TOKENS_HELP = "usage.total_tokens every run naming the allowance may spend together per period."


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _note(filename: str, line: str) -> None:
    """Print an operator's change and append it to STATE_DIR/logs/FILENAME."""
    from copydesk.settings import Settings

    err.print(safe(line), highlight=False, soft_wrap=True)
    record = Path(Settings().state_dir) / "logs" / filename
    try:
        private_dir(private_dir(record.parent.parent) / record.parent.name)  # the state folder, its logs
        with open_private(record, "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}\n")
    except OSError as exc:
        log.warning("could not record it in %s: %s", record, exc)


def _server() -> str:
    from copydesk.allowance import SERVER_NEEDED
    from copydesk.prefect_server import use_local_server

    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = use_local_server(warn=_warn) or launch.profile_api_url()
    if not url:
        raise InputError(SERVER_NEEDED)
    os.environ["PREFECT_API_URL"] = url
    return url


def _warn(message: str) -> None:
    warn(safe(message))


@budget_app.command("create")
def create(
    name: NameArg,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help=MAX_TOKENS_HELP, show_default=False)],
    period: Annotated[str, typer.Option("--period", help=PERIOD_HELP, show_default=False)],
    timezone: Annotated[str, typer.Option("--timezone", help=TIMEZONE_HELP)] = "UTC",
) -> None:
    """Record a shared allowance; specs only name it. Adopts what runs of the older scheme spent of it this period."""
    from copydesk.allowance_admin import allowance_from_options, describe

    who = _who()
    try:
        allowance = allowance_from_options(name, max_tokens, period, timezone, who=who)
        url = _server()
        created = launch.create_allowance(allowance)
    except CopydeskError as exc:
        raise fail(exc) from None
    _note("budget-changes.log", f"created shared allowance {name} on {url} by {who}: {describe(allowance)}")
    if created.adopted is not None and (created.adopted.used or created.adopted.closed):
        a = created.adopted
        err.print(safe(f"adopted what the server already counted for it this period: {a.spent:,} spent, "
                         f"{a.reserved:,} reserved (limit {a.limit:,} -> {allowance.max_tokens:,})"), highlight=False)
    if created.left:
        err.print(safe("counters of the same name under another period or timezone are left as they were "
                         f"(no run uses them now): {', '.join(created.left)}"), highlight=False, soft_wrap=True)


@budget_app.command("set")
def set_(
    name: NameArg,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help=MAX_TOKENS_HELP, show_default=False)] = None,
    period: Annotated[str | None, typer.Option("--period", help=PERIOD_HELP, show_default=False)] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help=TIMEZONE_HELP, show_default=False)] = None,
) -> None:
    """Change a recorded shared allowance (what is not given stays); the limit applies to runs in flight at once."""
    from copydesk.allowance_admin import allowance_from_options, describe

    who = _who()
    try:
        if max_tokens is not None or period is not None or timezone is not None:  # checked before the server
            allowance_from_options(name, max_tokens if max_tokens is not None else 1, period or "day",
                                   timezone or "UTC")
        url = _server()
        before, after = launch.set_allowance(name, max_tokens=max_tokens, period=period, timezone=timezone, who=who)
    except CopydeskError as exc:
        raise fail(exc) from None
    _note("budget-changes.log", f"changed shared allowance {name} on {url} by {who}: {describe(before)} -> "
                                f"{describe(after)}")
    if (before.period, before.timezone) != (after.period, after.timezone):
        err.print("another period or timezone counts on that period's own counters, from 0; runs in flight "
                  "finish on the counters they started with", highlight=False)


@budget_app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="Only this allowance.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Spent, reserved, limit and the period's end of each shared allowance (its current period)."""
    try:
        url = _server()
        statuses = launch.allowance_statuses(name)
    except CopydeskError as exc:
        raise fail(exc) from None
    if name is not None and not statuses:
        raise fail(InputError(f"no shared allowance named {name[:80]!r} is recorded on {url}: "
                               f"`copydesk budget create {name[:80]} --max-tokens N --period P` records it"))
    if as_json:
        print(json.dumps([{
            "name": s.name, "period": s.period, "key": s.key, "timezone": s.timezone, "spent": s.spent,
            "reserved": s.reserved, "limit": s.limit, "left": s.left, "closed": s.closed, "recorded": s.recorded,
            "changed": s.changed, "period_end": s.period_end.isoformat() if s.period_end else None,
        } for s in statuses], ensure_ascii=False))
        return
    table = Table(title=f"shared allowances on {url}")
    for column in ("name", "period", "spent", "reserved", "limit", "left", "state", "period ends"):
        table.add_column(column, justify="right" if column in ("spent", "reserved", "limit", "left") else "left")
    for s in statuses:
        end = s.period_end.isoformat(timespec="minutes") if s.period_end else "never"
        state = "spent (closed)" if s.closed else "open"
        if not s.recorded:
            state += "; not recorded: `copydesk budget create`"
        table.add_row(safe(s.name), f"{s.period} {s.key} {safe(s.timezone)}", f"{s.spent:,}", f"{s.reserved:,}",
                      f"{s.limit:,}", f"{s.left:,}", state, end)
    out.print(table)


@budget_app.command("reset")
def reset(name: NameArg) -> None:
    """Start the current period of allowance NAME again from 0 (the operator's override; logged)."""
    who = _who()
    try:
        url = _server()
        before = launch.reset_allowance(name, who=who)
    except CopydeskError as exc:
        raise fail(exc) from None
    if not before:
        raise fail(InputError(f"no shared allowance named {name[:80]!r} is recorded or counted on {url}"))
    for s in before:
        _note("budget-resets.log", f"reset shared allowance {s.name} ({s.period} {s.key}) on {url} by {who}: it was "
                                   f"{s.spent:,} spent and {s.reserved:,} reserved of {s.limit:,}")
