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
