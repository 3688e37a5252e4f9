"""Titles cut off: the title call ended by `max_tokens`, or the title stops mid-clause.

    "Using Git Branches for Small Teams: A Guide to Automate and Optimize Your Team's"   -> cut off
    "In a world where code is the lifeblood of innovation, why do we need a dedicated team to"

`title_cut_off(title, finish_reason, language)` says why a title looks cut off (None: it does not):
its call ended with finish_reason "length"; or, for English, it ends on a function word ("to",
"the", "and", "your", ...), a possessive, a comma, colon or dash, or with a bracket or quote left
open; in any language, with the ellipsis that copydesk's own cut adds.

The writer (`copydesk.writer.ArticleWriter`) asks for the title once more, with
REASK_FACTOR times the stage's max_tokens, when the first one is cut off and `reask` is on
(`copydesk.callplan` counts that call, so `copydesk plan` bounds it); the check then holds the
article whose title is still cut off (soft, needs_review).

    qc:
      truncated_title:
        enabled: true
        reask: true      # ask for the title again (once, with a larger max_tokens) before holding
"""

from __future__ import annotations

import re

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding
from copydesk.text import primary_language

#: The title re-ask's max_tokens, as a multiple of the title stage's.
REASK_FACTOR = 2

#: Words an English title does not end on: articles, conjunctions, possessive determiners,
#: prepositions that want an object, auxiliaries, subject pronouns. Words a finished title may end
#: on are left out ("What Not to Do", "Here's Why", "Logging In", "Scaling Up", "Ship It").
FUNCTION_WORDS = frozenset("""
a an the and or nor but yet to of for with from into onto upon about as than via vs versus
between without within across during your my our their his her its whose which who whom
is are was were has have had will would should shall must if because while although though whether
every each some any both either neither i we they he she
""".split())
_OPEN_PAIRS = (("(", ")"), ("[", "]"), ("“", "”"))
_WORD = re.compile(r"[A-Za-z’']+$")


def title_cut_off(title: str, finish_reason: str | None, language: str = "en") -> str | None:
    """Why `title` looks cut off, or None."""
    text = title.strip()
    if finish_reason == "length":
        return "the title call ended at max_tokens"
    if text.endswith(("…", "...")):
        return "the title ends with an ellipsis"
    if primary_language(language) != "en" or not text:
        return None
    if text[-1] in ",:;-–—&/+":
        return f"the title ends on {text[-1]!r}"
    for left, right in _OPEN_PAIRS:
        if text.count(left) > text.count(right):
            return f"the title leaves {left!r} open"
    if text.count('"') % 2:
        return "the title leaves a quote open"
    word = _WORD.search(text)
    if word is None:
        return None
    last = word.group(0).lower().replace("’", "'")
    before = text[: word.start()].rstrip().lower()
    if text[word.start() - 1: word.start()] == "-" or (last == "to" and before.endswith("how")):
        return None  # "How-To", "Follow-Up", "HOW TO": a compound, not a clause cut off
    if last.endswith(("'s", "s'")) and len(last) > 2:
        return f"the title ends on a possessive ({word.group(0)!r})"
    if last.strip("'") in FUNCTION_WORDS:
        return f"the title ends on {word.group(0)!r}"
    return None


class TruncatedTitlePolicy(CheckPolicy):
    #: Ask for a cut-off title again, once, with a larger max_tokens, before holding the article.
    reask: bool = True


class TruncatedTitleCheck(BaseCheck, key="truncated_title", policy=TruncatedTitlePolicy):
    def applies(self, draft: Draft) -> bool:
        return bool(draft.title)

    def run(self, draft: Draft) -> CheckResult:
        why = title_cut_off(draft.title, draft.title_finish_reason, draft.language)
        if why is None:
            return CheckResult(self.name, True, "soft", "the title is complete", 0)
        return CheckResult.found(self.name, f"{why}: {draft.title!r}",
                                 [finding(None, None, draft.title, where="title", reason=why)])
