"""Five-field cron expressions (`schedule.cron`), checked field by field without Prefect.

`cron_problem(expression)` says what is wrong with an expression, or None: the plain subset
of what Prefect's croniter accepts, so that a bad schedule fails `copydesk validate` rather
than the deployment later.
"""

from __future__ import annotations

import re

from copydesk.specyaml import short

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: The five cron fields in order: label, lowest and highest value, names allowed as values.
_CRON_FIELDS: tuple[tuple[str, int, int, frozenset[str]], ...] = (
    ("minute", 0, 59, frozenset()),
    ("hour", 0, 23, frozenset()),
    ("day", 1, 31, frozenset()),
    ("month", 1, 12, frozenset(_MONTHS)),
    ("weekday", 0, 7, frozenset(_WEEKDAYS)),  # 0 and 7 are both Sunday
)
_CRON_PART = re.compile(r"(?:\*|(?P<start>[0-9]+|[A-Za-z]+)(?:-(?P<end>[0-9]+|[A-Za-z]+))?)(?:/(?P<step>[0-9]+))?")


def _cron_field_ok(field: str, lo: int, hi: int, names: frozenset[str]) -> bool:
    """One cron field: comma-separated parts, each `*`, `a` or `a-b`, with an optional `/step`.

    Values (numbers or names such as `mon`, `jan`) must lie within lo-hi and a step
    must be positive. This is the plain subset of what Prefect's croniter accepts
    (a range like `fri-mon` wraps around there, so it is allowed here too)."""

    def value_ok(token: str | None) -> bool:
        if token is None:
            return True
        if token.isdigit():
            return lo <= int(token) <= hi
        return token.lower() in names

    for part in field.split(","):
        match = _CRON_PART.fullmatch(part)
        if not match:
            return False
        step = match["step"]
        if step is not None and int(step) == 0:
            return False
        if not (value_ok(match["start"]) and value_ok(match["end"])):
            return False
    return True


def cron_problem(value: str) -> str | None:
    """Why `value` is not a five-field cron expression (naming the field), or None."""
    fields = value.split()
    if len(fields) != 5:
        return "cron needs five fields: minute hour day month weekday"
    for field, (label, lo, hi, names) in zip(fields, _CRON_FIELDS, strict=True):
        if not _cron_field_ok(field, lo, hi, names):
            return f"cron {label} field {short(field)} is not valid (allowed {lo}-{hi})"
    return None
