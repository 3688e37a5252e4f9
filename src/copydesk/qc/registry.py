"""The registered checks, in the order the gate runs them, and the `qc:` section composed from them.

    CHECKS      the check components (`copydesk.qc.check.Check`), in run order within each phase:
                text checks, then the editorial checks
    SERVICES    the `qc:` keys of what the gate runs itself: grammar and moderation (services given
                to the gate, run concurrently), originality (the run's article index)
    QCSpec      the `qc:` section: every registered key, `extra="forbid"`

Adding a check: write its module (its policy model and its `BaseCheck` subclass), then add one
line to CHECKS. See ARCHITECTURE.md, "Adding a check".
"""

from __future__ import annotations

from typing import Any

from pydantic import create_model

from copydesk.qc.about_text import AboutTextCheck
from copydesk.qc.basics import LengthCheck, OutlineCoverageCheck, RepetitionCheck
from copydesk.qc.check import Check, CheckEnv, CheckPolicy, Policy, policy_field
from copydesk.qc.citations import CitationsCheck
from copydesk.qc.code_blocks import CodeBlocksCheck
from copydesk.qc.duplicates import DuplicationCheck
from copydesk.qc.echo import PromptEchoCheck
from copydesk.qc.grammar import GrammarPolicy
from copydesk.qc.heading_depth import HeadingDepthCheck
from copydesk.qc.language import LanguageCheck
from copydesk.qc.links import LinksCheck
from copydesk.qc.markdown import MarkdownCheck
from copydesk.qc.metatalk import MetaTalkCheck
from copydesk.qc.moderation import ModerationPolicy
from copydesk.qc.originality import OriginalityPolicy
from copydesk.qc.placeholders import PlaceholdersCheck
from copydesk.qc.refusal import RefusalCheck
from copydesk.qc.relevance import RelevanceCheck
from copydesk.qc.repair import RepairPolicy
from copydesk.qc.task_headings import TaskHeadingsCheck
from copydesk.qc.thin import ThinSectionsCheck
from copydesk.qc.title import TruncatedTitleCheck
from copydesk.qc.truncation import TruncationCheck, UnfinishedCheck

#: The check components, in the order their results appear in a verdict (within each phase).
CHECKS: tuple[type[Any], ...] = (
    LengthCheck,
    OutlineCoverageCheck,
    RepetitionCheck,
    TruncationCheck,
    PromptEchoCheck,
    TaskHeadingsCheck,
    MetaTalkCheck,
    AboutTextCheck,
    RefusalCheck,
    PlaceholdersCheck,
    MarkdownCheck,
    CodeBlocksCheck,
    LanguageCheck,
    DuplicationCheck,
    LinksCheck,
    ThinSectionsCheck,
    CitationsCheck,
    UnfinishedCheck,
    RelevanceCheck,
    HeadingDepthCheck,
    TruncatedTitleCheck,
)

#: `qc:` keys of what the gate runs itself, and the runner's repair loop.
SERVICES: dict[str, tuple[Any, Any]] = {
    "grammar": policy_field(GrammarPolicy),
    "moderation": policy_field(ModerationPolicy),
    "originality": policy_field(OriginalityPolicy),
}
AFTER: dict[str, tuple[Any, Any]] = {"repair": policy_field(RepairPolicy)}


def _qc_fields() -> dict[str, tuple[Any, Any]]:
    fields: dict[str, tuple[Any, Any]] = dict(SERVICES)
    for check in CHECKS:
        for key, spec in check.fields.items():
            if key in fields:
                raise RuntimeError(f"two checks claim the qc key {key!r}")
            fields[key] = spec
    fields.update(AFTER)
    return fields


#: The spec's `qc:` section, composed from the registered policies.
QCSpec = create_model("QCSpec", __base__=Policy, __module__=__name__, **_qc_fields())  # type: ignore[call-overload]


def build_checks(qc: Any, env: CheckEnv) -> list[Check]:
    """One instance of each registered check, for the gate configured by `qc`."""
    return [check(qc, env) for check in CHECKS]


__all__ = ["CHECKS", "CheckPolicy", "QCSpec", "build_checks"]
