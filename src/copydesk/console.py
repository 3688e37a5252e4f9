"""What reaches the terminal: the two consoles, `safe()` for data, and `fail()`.

Everything printed through Rich is parsed as markup, so any text that comes
from data (titles, topics, model names, reasons, paths, error messages) must
go through `safe()` first. It removes ANSI/terminal escape sequences and other
control characters (which could clear the screen, move the cursor or retitle
the window) and escapes Rich markup, so `Why [/] matters` prints as written
instead of raising `MarkupError`. Newlines and tabs are kept.

    out, err        Rich consoles for stdout and stderr
    safe(value)     str(value) made inert for a Rich markup string or table cell
    fail(exc)       prints "error: ..." on stderr, returns the typer.Exit of exc.exit_code
    warn(message)   prints "warning: ..." on stderr (message already safe() or plain)
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from copydesk.controls import clean_text as strip_control  # the one definition, files and terminal alike
from copydesk.errors import CopydeskError
from copydesk.redact import redact

out = Console()
err = Console(stderr=True)


def safe(value: object) -> str:
    """`str(value)` made inert for Rich: secrets redacted, no escape sequences, no control characters,
    markup escaped."""
    return escape(strip_control(redact(str(value))))


def fail(exc: CopydeskError) -> typer.Exit:
    """Print `exc` on stderr and return the `typer.Exit` carrying its exit code (raise it)."""
    err.print(f"[bold red]error:[/] {safe(exc)}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def warn(message: str) -> None:
    """Print a warning on stderr; `message` is markup-safe (built with `safe()` for any data)."""
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
