"""The worked example of a check component: `qc.heading_depth`, alone and through the gate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from copydesk.qc.check import CheckEnv, Draft
from copydesk.qc.gate import QualityGate
from copydesk.qc.heading_depth import HeadingDepthCheck, flatten_headings, too_deep
from copydesk.qc.registry import CHECKS
from copydesk.spec import QCSpec

BODIES = [
    ("Why retries matter",
     "A flaky network call should not fail a whole pipeline. Prefect lets a task declare how many times it is "
     "retried and how long it waits between attempts. The defaults are conservative, so most teams tune them once "
     "they have seen real failure rates in production."),
    ("Configuring backoff",
     "Start with a delay of one second and double it on every attempt. Cap the delay so that a long outage does not "
     "stall the run for hours, and add a little jitter so that many workers do not wake up at the same moment."),
]
DEEP = ("Tuning retries per task",
        "Each task can carry its own retry settings, which keeps the defaults simple for everything else.\n\n"
        "#### Retries for flaky APIs\n\n"
        "Give calls to a flaky API more attempts and a longer delay than calls to your own database.\n\n"
        "```text\n##### not a heading: inside code\n```\n")


def policy(**qc) -> QCSpec:
    return QCSpec.model_validate({"grammar": {"enabled": False}, "moderation": {"enabled": False},
                                  "min_words": 50, **qc})


async def assess(gate: QualityGate, sections):
    """The gate's verdict with a draft that has no prompts and no slot (those checks are skipped)."""
    markdown = "# Retries in Prefect\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in sections) + "\n"
    outline = [h for h, _ in sections]
    draft = Draft("retries in Prefect", "Retries in Prefect", outline, sections, "en-US", markdown=markdown,
                  finish_reasons=["stop"] * len(sections))
    return await gate.assess(draft)


def check(**settings) -> HeadingDepthCheck:
    return HeadingDepthCheck(QCSpec.model_validate({"heading_depth": settings}), CheckEnv("en-US"))


def one_section(body: str) -> Draft:
    return Draft("t", "T", ["A"], [("A", body)], "en-US")


def test_headings_deeper_than_the_limit_are_found_outside_code_only():
    assert too_deep(DEEP[1], 3) == [(2, 4, "Retries for flaky APIs")]
    assert too_deep(DEEP[1], 4) == []
    assert too_deep("### fine\n\ntext", 3) == []


def test_flatten_rewrites_only_the_deep_headings_at_the_limit():
    body, changed = flatten_headings(DEEP[1], 3)
    assert changed == ["Retries for flaky APIs"]
    assert "\n### Retries for flaky APIs\n" in body and "#### Retries" not in body
    assert "##### not a heading: inside code" in body
    assert flatten_headings("no headings here", 3) == ("no headings here", [])


def test_review_fails_softly_naming_the_section_and_heading():
    result = check(max_depth=3).run(one_section(DEEP[1]))
    assert not result.passed and result.severity == "soft" and result.value == 1
    assert "level-4 heading" in result.detail and "Retries for flaky APIs" in result.detail
    assert result.evidence[0]["section"] == 1 and result.evidence[0]["level"] == 4


def test_flatten_repairs_then_the_check_passes_with_the_change_recorded():
    heading_depth = check(max_depth=3, action="flatten")
    repair = heading_depth.repair(one_section(DEEP[1]))
    assert repair is not None and len(repair.findings) == 1
    assert repair.note == "1 heading(s) deeper than level 3 rewritten at it"
    repaired = Draft("t", "T", ["A"], repair.draft.sections, "en-US", repaired={"heading_depth": repair.findings})
    result = heading_depth.run(repaired)
    assert result.passed and result.evidence == repair.findings and "1 flattened" in result.detail
    assert check(max_depth=3).repair(one_section(DEEP[1])) is None  # review: nothing is rewritten


def test_the_policy_is_part_of_the_spec_and_validated_there():
    assert QCSpec().heading_depth.max_depth is None
    assert HeadingDepthCheck in CHECKS
    for bad in ({"max_depth": 1}, {"max_depth": 7}, {"action": "demote"}, {"max_depth": 3, "depht": 2}):
        with pytest.raises(ValidationError):
            QCSpec.model_validate({"heading_depth": bad})


async def test_off_by_default_it_is_absent_from_the_verdict():
    verdict = await assess(QualityGate(policy(), "en-US"), [*BODIES, DEEP])
    assert "heading_depth" not in {c.name for c in verdict.checks} | set(verdict.skipped)


async def test_through_the_gate_review_holds_the_article():
    verdict = await assess(QualityGate(policy(heading_depth={"max_depth": 3}), "en-US"), [*BODIES, DEEP])
    assert verdict.status == "needs_review"
    assert any(r.startswith("heading_depth: section 3 'Tuning retries per task' has a level-4 heading")
               for r in verdict.reasons), verdict.reasons
    assert verdict.section_bodies is None


async def test_through_the_gate_flatten_repairs_the_article_and_publishes_it():
    gate = QualityGate(policy(heading_depth={"max_depth": 3, "action": "flatten"}), "en-US")
    verdict = await assess(gate, [*BODIES, DEEP])
    assert verdict.status == "published", verdict.reasons
    assert verdict.repairs == ["1 heading(s) deeper than level 3 rewritten at it"]
    assert verdict.section_bodies is not None and "\n### Retries for flaky APIs\n" in verdict.section_bodies[2]
    result = next(c for c in verdict.checks if c.name == "heading_depth")
    assert result.passed and result.evidence[0]["action"] == "rewritten at level 3"
