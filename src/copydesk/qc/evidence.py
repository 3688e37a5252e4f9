"""Evidence of an editorial finding: which section, what text, where; one shape for the QC report.

    finding(2, "Configuring backoff", "I'm sorry, but as an AI...", where="body")
    -> {"section": 2, "heading": "Configuring backoff", "where": "body", "text": "I'm sorry, but as an AI..."}

`excerpt` bounds quoted text so that a report stays readable and small.
"""

from __future__ import annotations

from typing import Any

#: Characters of offending text quoted in evidence and reasons.
EXCERPT_CHARS = 160


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def finding(section: int | None, heading: str | None, text: str, **where: Any) -> dict[str, Any]:
    """One piece of evidence. `section` is 1-based (None: the article as a whole)."""
    item: dict[str, Any] = {"section": section, "heading": heading}
    item.update(where)
    item["text"] = excerpt(text)
    return item


def place(item: dict[str, Any]) -> str:
    """Where a finding is, for a one-line reason: `section 2 'Configuring backoff'`."""
    if item.get("section") is None:
        return "the article"
    return f"section {item['section']} {item.get('heading')!r}"
