"""Placeholders and template residue: text a writer meant to replace and never did.

    [Insert a real-world example here]   <insert link>   [Your Name]   [citation needed]
    {{ variable }}   {% tag %}   ${VAR}
    TODO   TBD   FIXME   XXX   lorem ipsum
    chat-template tokens: <|im_end|>  </s>  [/INST]  ### Response:
    a heading that is only a label: "Section 3", "Part 2:", "第3节"
    【插入示例】   [在此插入…]   （此处填写…）   待补充

Read in the prose only: inline code and code blocks may legitimately hold `{{ x }}`
or `XXX` (a Jinja example, a masked number). A finding is soft: an editor fills it in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from copydesk.qc.check import BaseCheck, Draft
from copydesk.qc.content import CheckResult, findings_check
from copydesk.qc.evidence import finding, place
from copydesk.prose import document, extract_prose

_INLINE_CODE = re.compile(r"(`+).+?\1")

_PLACEHOLDER = re.compile(
    r"""
    [\[<【]\s*(?i:insert|add|include|enter|replace|your|placeholder|link|url|source|citation|reference
                |example|company|product|name|date|author|image|figure|tbd|todo)\b[^\]>】\n]{0,60}[\]>】](?!\()
  | [(（]\s*(?i:insert|placeholder|tbd|todo|your\s+[\w\s]{1,30}\s+here)\b[^)）\n]{0,60}[)）]
  | \{\{[^{}\n]{0,80}\}\} | \{%[^%\n]{0,80}%\} | \$\{[A-Za-z_][A-Za-z0-9_]*\}
  | \b(?:TODO|TBD|FIXME|XXX+)\b
  | \blorem\s+ipsum\b | \bdolor\s+sit\s+amet\b
  | [\[【（(]\s*(?:在此|此处|这里)?(?:插入|填写|添加|补充|替换)[^\]】）)\n]{0,40}[\]】）)]
  | (?:此处|这里|在此)(?:插入|填写|添加)
  | 待补充 | 待填写
  | <\|[a-z_]{2,20}\|> | </?s> | \[/?INST\] | <(?:start|end)_of_turn> | ^\#{2,4}\s*(?:Response|Instruction|Input|Assistant|User|System)\s*:
    """,
    re.VERBOSE | re.MULTILINE,
)
#: A heading that is only a label where its words should be: "Section 3", "Part II:", "Heading 2", "第3节".
_LABEL_HEADING = re.compile(
    r"^\W*(?:(?i:section|part|heading|chapter|title|step)\s+(?:\d+|[IVX]+)\s*:?|第\s*[\d一二三四五六七八九十]+\s*(?:节|部分|章|步))\W*$"
)
_CASELESS = re.compile(r"\blorem\s+ipsum\b|\bdolor\s+sit\s+amet\b", re.IGNORECASE)


def _raw_prose(body: str) -> str:
    """The body's lines outside fenced code, as written (chat-template tokens are HTML-like and
    Markdown-like, so the prose extraction may drop them)."""
    return "\n".join(_INLINE_CODE.sub("", line) for _, line in document(body).lines_outside_fences()[0])


def placeholder_findings(sections: Sequence[tuple[str, str]]) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        if _LABEL_HEADING.match(heading):
            found.append(finding(i, heading, heading, where="heading", all=[heading]))
        residue = [m.group(0) for m in _PLACEHOLDER.finditer(_raw_prose(body))]
        for where, text in (("heading", heading), ("body", extract_prose(body).countable_text())):
            hits = [m.group(0) for m in _PLACEHOLDER.finditer(text)]
            if where == "body":
                hits += [h for h in residue if h not in hits]
            hits += [m.group(0) for m in _CASELESS.finditer(text) if m.group(0) not in hits]
            if hits:
                found.append(finding(i, heading, hits[0], where=where, all=sorted(set(hits))[:10]))
    return found


check_placeholders = findings_check(
    "placeholders", placeholder_findings, "no placeholders or template residue",
    lambda first: f"placeholder in {place(first)}: \"{first['text']}\"", more="more sections")


class PlaceholdersCheck(BaseCheck, key="placeholders"):
    def run(self, draft: Draft) -> CheckResult:
        return check_placeholders(draft.sections)
