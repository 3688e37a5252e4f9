"""Links: every URL is on the spec's allowlist, or the article is held (or the link stripped).

    qc:
      links:
        allow: [docs.python.org, peps.python.org]   # a domain allows its subdomains
        policy: review      # review (default): any other link -> needs_review, links listed
                            # strip: other links removed, their text kept, recorded

Models invent URLs that look right and lead nowhere; an editor checks each one.
Seen: Markdown links and images, autolinks `<https://...>`, bare `http(s)://` and
`www.` addresses, in prose and in code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft, Repair, repair_each
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place

_MD_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>")
_BARE = re.compile(r"(?<![\w/(<\[])((?:https?|ftp)://[^\s<>()\[\]\"'`]+|www\.[a-z0-9-]+(?:\.[a-z0-9-]+)+[^\s<>()\[\]\"'`]*)",
                   re.IGNORECASE)


def _host(url: str) -> str:
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def allowed(url: str, allow: Sequence[str]) -> bool:
    host = _host(url)
    return bool(host) and any(host == d or host.endswith("." + d) for d in allow)


def find_urls(body: str) -> list[str]:
    """Every URL in `body`, in order (relative links and anchors are not URLs)."""
    urls = [m.group(3) for m in _MD_LINK.finditer(body) if re.match(r"(?:https?|ftp)://|www\.", m.group(3), re.I)]
    rest = _MD_LINK.sub(" ", body)
    urls += [m.group(1) for m in _AUTOLINK.finditer(rest)]
    rest = _AUTOLINK.sub(" ", rest)
    urls += [m.group(1).rstrip(".,;:!?") for m in _BARE.finditer(rest)]
    return urls


def strip_links(body: str, allow: Sequence[str]) -> tuple[str, list[str]]:
    """`body` without links outside `allow` (a link's text stays), and the URLs removed."""
    removed: list[str] = []

    def md(m: re.Match[str]) -> str:
        if not re.match(r"(?:https?|ftp)://|www\.", m.group(3), re.I) or allowed(m.group(3), allow):
            return m.group(0)
        removed.append(m.group(3))
        return "" if m.group(1) else m.group(2)

    def bare(m: re.Match[str]) -> str:
        url = m.group(1).rstrip(".,;:!?")
        if allowed(url, allow):
            return m.group(0)
        removed.append(url)
        return m.group(0)[len(url):] if not m.group(0).startswith("<") else ""

    body = _MD_LINK.sub(md, body)
    body = _AUTOLINK.sub(lambda m: m.group(0) if allowed(m.group(1), allow) else (removed.append(m.group(1)) or ""),
                         body)
    body = _BARE.sub(bare, body)
    body = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", body))
    body = re.sub(r"\(\s*\)", "", body)
    return body, removed


def link_findings(sections: Sequence[tuple[str, str]], allow: Sequence[str]) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        for url in find_urls(body):
            if not allowed(url, allow):
                found.append(finding(i, heading, url, host=_host(url)))
    return found


def check_links(sections: Sequence[tuple[str, str]], allow: Sequence[str], stripped: Sequence[dict] = ()) -> CheckResult:
    """Soft failure listing every link not on `allow`; `stripped` (links removed) is recorded."""
    found = link_findings(sections, allow)
    if not found:
        detail = "no links outside qc.links.allow"
        if stripped:
            detail = f"stripped {len(stripped)} link(s) not on qc.links.allow"
        return CheckResult("links", True, "soft", detail, 0, evidence=tuple(stripped))
    urls = sorted({f["text"] for f in found})
    shown = ", ".join(urls[:3]) + (f" (+{len(urls) - 3} more)" if len(urls) > 3 else "")
    detail = f"{len(urls)} link(s) not on qc.links.allow, check them: {shown} (first in {place(found[0])})"
    return CheckResult("links", False, "soft", detail, len(urls), evidence=tuple([*found, *stripped]))


class LinksPolicy(CheckPolicy):
    #: Domains whose links may be published (a domain allows its subdomains too).
    allow: list[str] = Field(default_factory=list)
    #: review: an article with any other link needs review; strip: such links are removed (text kept).
    policy: Literal["review", "strip"] = "review"

    @field_validator("allow")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if not re.fullmatch(r"(?:[a-z0-9-]+\.)+[a-z]{2,}|localhost", d.strip().lower())]
        if bad:
            raise ValueError(f"not a domain name: {', '.join(map(repr, bad))} (write docs.python.org, not a URL)")
        return [d.strip().lower() for d in value]


class LinksCheck(BaseCheck, key="links", policy=LinksPolicy):
    def repair(self, draft: Draft) -> Repair | None:
        if self.policy.policy != "strip":
            return None
        return repair_each(draft, lambda body: strip_links(body, self.policy.allow), "link removed",
                           "{changes} link(s) not on qc.links.allow removed")

    def run(self, draft: Draft) -> CheckResult:
        return check_links(draft.sections, self.policy.allow, self.recorded(draft))
