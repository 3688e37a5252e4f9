"""Repair: which sections to write again after the gate, and the re-ask that names the failure.

    targets = sections_to_repair(verdict.checks)        # {2: [finding, ...], ...} (1-based)
    note = repair_note(targets[2], language="en-US")    # appended to the section's own prompt

`qc.repair.max_attempts` (default 1) bounds how often a section is written again; the
runner re-asks through the same budget guard and call store as every call, then the
gate judges the new text (an article is published only if its final text passes).
Only failures located in a section's body are repaired here: a heading that echoes the
prompt or an off-topic title comes from the outline and title stages.

The note is at most MAX_NOTE_CHARS characters, so `copydesk plan` can bound a re-ask
like any other call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from copydesk.qc.check import Policy
from copydesk.qc.content import CheckResult


class RepairPolicy(Policy):
    #: How often a section failing a section-level check is written again (0: never).
    max_attempts: int = Field(1, ge=0, le=5)

#: Checks whose section-level findings a rewrite of that section can fix, and what to ask.
ADVICE = {
    "refusal": "It refused or talked about being an AI. Write the section's content itself.",
    "prompt_echo": "It repeated the instructions you were given. Write the content, not the instructions.",
    "meta_talk": "It spoke to the requester (a preamble or a sign-off). Write only the text of the article.",
    "placeholders": "It left placeholders or template residue. Write real, finished content.",
    "markdown": "Its Markdown was broken. Use no headings, and close every code block you open.",
    "language": "It was not written in {language}. Write it in {language}.",
    "duplication": "It repeated another section. Write only about this section's own heading.",
    "links": "It contained links that cannot be checked. Write it without any URL.",
    "thin_sections": "It was far too short. Write two full paragraphs.",
    "relevance": "It was not about the article's topic. Write about the topic and this heading.",
    "citations": "It cited a study, survey or paper that cannot be checked. Write it without citing sources or statistics.",
    "unfinished": "It stopped in the middle of a sentence. Write it in full, ending with a complete sentence.",
    "truncation": "It was cut off. Write a shorter section that ends with a complete sentence.",
    "about_text": "It talked about the text itself or the request. Write only the article's content, for its readers.",
    "code_blocks": "Its code did not parse. Write complete, valid code, or no code at all.",
}
#: The longest note a re-ask appends to the section prompt (characters).
MAX_NOTE_CHARS = 1000


def sections_to_repair(checks: Sequence[CheckResult]) -> dict[int, list[dict[str, Any]]]:
    """1-based section numbers with the failed checks' findings in their bodies."""
    targets: dict[int, list[dict[str, Any]]] = {}
    for check in checks:
        if not check.ran or check.passed or check.name not in ADVICE:
            continue
        for item in check.evidence:
            section = item.get("section")
            if not isinstance(section, int) or item.get("where") in ("heading", "title") or "action" in item:
                continue
            targets.setdefault(section, []).append({"check": check.name, "text": item.get("text", "")})
    return targets


def repair_note(findings: Sequence[dict[str, Any]], language: str) -> str:
    """The re-ask: what was wrong with the previous answer, check by check, quoting it."""
    lines = ["Your previous answer for this section could not be published."]
    seen: set[str] = set()
    for finding in findings:
        check = finding["check"]
        if check in seen:
            continue
        seen.add(check)
        quote = str(finding.get("text", ""))[:120]
        lines.append(f"- {ADVICE[check].format(language=language)}" + (f' (It said: "{quote}")' if quote else ""))
    lines.append("Write the section again.")
    note = "\n".join(lines)
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 1] + "…"
