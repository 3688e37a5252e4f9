"""The spec's `budget.shared`: validated like the rest of the spec, errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from copydesk.errors import SpecError
from copydesk.spec import parse_spec

from test_spec import BASE

SHARED = "  shared:\n    name: content-team\n    max_tokens: 2000000\n    period: day\n    timezone: Europe/Berlin\n"


def spec_with(shared: str):
    return parse_spec(BASE.replace("  max_total_tokens: 60000\n", "  max_total_tokens: 60000\n" + shared),
                      Path("/x/pipelines/p.yaml"))


def test_shared_budget_parses() -> None:
    shared = spec_with(SHARED).budget.shared
    assert shared is not None
    assert (shared.name, shared.max_tokens, shared.period, shared.timezone) == (
        "content-team", 2_000_000, "day", "Europe/Berlin")


def test_a_spec_may_only_name_the_allowance() -> None:
    """The operator records the limit, period and timezone (`copydesk budget create`): a spec that
    names the allowance only leaves them unset, and nothing is filled in for it."""
    shared = spec_with("  shared:\n    name: team\n").budget.shared
    assert shared is not None and shared.name == "team"
    assert (shared.max_tokens, shared.period, shared.timezone) == (None, None, None)
    assert spec_with("  shared: {name: team}\n").budget.shared == shared
    assert parse_spec(BASE, Path("/x/pipelines/p.yaml")).budget.shared is None


@pytest.mark.parametrize(("text", "field"), [
    (SHARED.replace("period: day", "period: hour"), r"budget\.shared\.period"),
    (SHARED.replace("Europe/Berlin", "Mars/Olympus"), r"budget\.shared\.timezone"),
    (SHARED.replace("2000000", "0"), r"budget\.shared\.max_tokens"),
    (SHARED.replace("content-team", "Content Team"), r"budget\.shared\.name"),
    (SHARED + "    limit: 5\n", r"budget\.shared\.limit"),
    ("  shared:\n    max_tokens: 10\n", r"budget\.shared\.name"),
])
def test_bad_shared_budget_names_the_field(text: str, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        spec_with(text)
