"""`copydesk budget status|reset`: shared allowances (budget.shared) held by the Prefect server.

Reaches Prefect only through copydesk.launch. The server is PREFECT_API_URL, or the
one `copydesk server start` started; without either there is nothing to show (exit 2).
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
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from copydesk import launch
from copydesk.errors import CopydeskError, InputError
from copydesk.private import open_private, private_dir

budget_app = typer.Typer(help="Shared allowances (budget.shared) held by the Prefect server.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)
log = logging.getLogger("copydesk.allowance")

NameArg = Annotated[str, typer.Argument(help="The allowance's name (budget.shared.name).", show_default=False)]


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
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(exc: CopydeskError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


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
        raise _fail(exc) from None
    if name is not None and not statuses:
        raise _fail(InputError(f"no shared allowance named {name!r} has been used this period on {url}"))
    if as_json:
        print(json.dumps([{
            "name": s.name, "period": s.period, "key": s.key, "timezone": s.timezone, "spent": s.spent,
            "reserved": s.reserved, "limit": s.limit, "left": s.left, "closed": s.closed,
            "period_end": s.period_end.isoformat() if s.period_end else None,
        } for s in statuses], ensure_ascii=False))
        return
    table = Table(title=f"shared allowances on {url}")
    for column in ("name", "period", "spent", "reserved", "limit", "left", "state", "period ends"):
        table.add_column(column, justify="right" if column in ("spent", "reserved", "limit", "left") else "left")
    for s in statuses:
        end = s.period_end.isoformat(timespec="minutes") if s.period_end else "never"
        table.add_row(escape(s.name), f"{s.period} {s.key}", f"{s.spent:,}", f"{s.reserved:,}", f"{s.limit:,}",
                      f"{s.left:,}", "spent (closed)" if s.closed else "open", end)
    out.print(table)


@budget_app.command("reset")
def reset(name: NameArg) -> None:
    """Start the current period of allowance NAME again from 0 (the operator's override; logged)."""
    from copydesk.settings import Settings

    who = f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        url = _server()
        before = launch.reset_allowance(name, who=who)
    except CopydeskError as exc:
        raise _fail(exc) from None
    if not before:
        raise _fail(InputError(f"no shared allowance named {name!r} has been used this period on {url}"))
    record = Path(Settings().state_dir) / "logs" / "budget-resets.log"
    for s in before:
        line = (f"reset shared allowance {s.name} ({s.period} {s.key}) on {url} by {who}: it was {s.spent:,} spent "
                f"and {s.reserved:,} reserved of {s.limit:,}")
        err.print(escape(line), highlight=False)
        try:
            private_dir(private_dir(record.parent.parent) / record.parent.name)  # the state folder, its logs
            with open_private(record, "a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}\n")
        except OSError as exc:
            log.warning("could not record the reset in %s: %s", record, exc)
