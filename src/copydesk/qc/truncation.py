"""Trimming a section that max_tokens cut off, back to its last complete sentence.

    trim_incomplete("Retries help. They hide short outa")  -> ("Retries help.", "They hide short outa")

`qc.truncation: trim` applies it to every section whose generation ended with
finish_reason "length"; the default, `review`, leaves the text and sends the article
to review (`copydesk.qc.content.check_truncation`). Nothing is trimmed when no complete
sentence would be left, or when the cut would leave less than half of the section.
"""

from __future__ import annotations

import re

#: The end of a sentence: . ! ? (then closing quotes/brackets) before whitespace or the end;
#: Chinese 。！？ anywhere.
_END = re.compile(r"""[.!?]["'”’)\]]*(?=\s|$)|[。！？]["'”’」』）)\]]*""")
#: Share of a section that trimming may remove, at most.
MAX_CUT_SHARE = 0.5


def trim_incomplete(body: str) -> tuple[str, str]:
    """`body` up to its last complete sentence, and what was cut ("" when nothing was)."""
    text = body.rstrip()
    ends = list(_END.finditer(text))
    if not ends:
        return body, ""
    last = ends[-1].end()
    if last >= len(text):
        return body, ""
    kept, cut = text[:last].rstrip(), text[last:].strip()
    if len(kept) < len(text) * (1 - MAX_CUT_SHARE):
        return body, ""
    return kept, cut


#: How a finished section may end: a sentence end, a colon before a list or code, a closing
#: bracket/quote after one, or the end of a code block, list item, table row or heading.
_FINISHED = re.compile(r"""(?:[.!?:;。！？：；…]["'”’」』）)\]*_`]*|[)\]）】」』"'”’*_`|>]|```|~~~)\s*$""")


def unfinished_findings(sections: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[dict]:
    """Sections whose text stops mid-sentence although the server said it was done ("stop"):
    the last line of prose ends in a letter or digit or a comma, not a sentence end."""
    from copydesk.qc.evidence import finding  # noqa: PLC0415 - evidence imports nothing of ours

    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        lines = [line for line in body.rstrip().split("\n") if line.strip()]
        if not lines:
            continue
        last = lines[-1].rstrip()
        if last.lstrip().startswith(("#", "|", "-", "*", "+", "    ", ">")) or re.match(r"\s*\d+[.)]\s", last):
            continue
        if not _FINISHED.search(last):
            found.append(finding(i, heading, last[-80:], where="end"))
    return found
