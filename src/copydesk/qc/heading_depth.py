"""The worked example of a check component: headings nested deeper than the policy allows.

    qc:
      heading_depth:
        max_depth: 3        # deepest heading level allowed (### ); unset (the default): not checked
        action: review      # review: hold the article; flatten: rewrite deeper headings at max_depth

The article's title is `#` and its sections `##`, so `max_depth` is at least 2. Headings are read
from the section's markdown-it tokens (`draft.documents`): inside code they are not headings. Unset by default, so that no existing spec changes: the check is then
absent from the verdict (not listed as skipped either). A flattened heading is recorded in the
check's evidence, and the check passes; with `review` the article goes to review (soft).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from copydesk.qc.check import BaseCheck, Draft, Mode, Policy, Repair, repair_each
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.prose import document

_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)[ \t]*(.*?)[ \t]*#*[ \t]*$")


class HeadingDepthPolicy(Policy):
    #: The deepest heading level allowed in an article (3: `###`); unset: not checked.
    max_depth: int | None = Field(None, ge=2, le=6)
    #: review: an article with a deeper heading needs review; flatten: such headings are rewritten at max_depth.
    action: Literal["review", "flatten"] = "review"


def too_deep(body: str, max_depth: int) -> list[tuple[int, int, str]]:
    """(0-based line index, level, text) of each ATX heading deeper than `max_depth`, from the body's
    tokens (none in code or quotes; a line that starts with the heading, not a list item's)."""
    lines = body.split("\n")
    found = []
    for n, token in document(body).headings():
        m = _ATX.match(lines[n]) if token.markup.startswith("#") else None
        if m and len(m.group(1)) > max_depth:
            found.append((n, len(m.group(1)), m.group(2)))
    return found


def flatten_headings(body: str, max_depth: int) -> tuple[str, list[str]]:
    """`body` with every heading deeper than `max_depth` rewritten at `max_depth`, and their texts."""
    found = too_deep(body, max_depth)
    if not found:
        return body, []
    lines = body.split("\n")
    for index, _, text in found:
        lines[index] = f"{'#' * max_depth} {text}"
    return "\n".join(lines), [text for _, _, text in found]


class HeadingDepthCheck(BaseCheck, key="heading_depth", policy=HeadingDepthPolicy):
    def enabled(self) -> bool:
        return self.policy.max_depth is not None

    def mode(self, draft: Draft) -> Mode:
        return "run" if self.enabled() else "absent"

    def repair(self, draft: Draft) -> Repair | None:
        if self.policy.action != "flatten":
            return None
        depth = self.policy.max_depth
        return repair_each(draft, lambda body: flatten_headings(body, depth), f"rewritten at level {depth}",
                           f"{{changes}} heading(s) deeper than level {depth} rewritten at it")

    def run(self, draft: Draft) -> CheckResult:
        depth = self.policy.max_depth
        found = [finding(i + 1, heading, f"{'#' * level} {text}", level=level)
                 for i, (heading, body) in enumerate(draft.sections) for _, level, text in too_deep(body, depth)]
        flattened = self.recorded(draft)
        if found:
            return CheckResult.found(self.name, f"{place(found[0])} has a level-{found[0]['level']} heading "
                                     f"(max_depth {depth}): {found[0]['text']!r}", found)
        detail = f"no heading deeper than level {depth}"
        if flattened:
            detail += f"; {len(flattened)} flattened"
        return CheckResult(self.name, True, "soft", detail, 0, evidence=tuple(flattened))
