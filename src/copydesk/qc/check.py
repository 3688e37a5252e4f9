"""A check as a component: its name, its policy model, `run(draft) -> CheckResult`, an optional `repair`.

    class HeadingDepthCheck(BaseCheck, key="heading_depth", policy=HeadingDepthPolicy):
        # key: its name and its `qc:` key; policy: pydantic, extra="forbid", in the check's module
        def run(self, draft: Draft) -> CheckResult: ...

The gate (`copydesk.qc.gate`) and the editorial pass (`copydesk.qc.editorial`) iterate the
ordered registry (`copydesk.qc.registry.CHECKS`), and the spec's `qc:` section is composed from
the registered checks' policies (`copydesk.qc.registry.QCSpec`). How a check is added:
ARCHITECTURE.md, "Adding a check".

A check is built once per gate from the `qc:` section and what the gate shares (`CheckEnv`),
and then judges many articles, concurrently: it keeps no state of its own between articles.
What a check's `repair` found reaches its `run` in `draft.repaired[name]`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from copydesk.prose import Document, document
from copydesk.qc.content import CheckResult, repair_note
from copydesk.qc.evidence import finding

#: When the gate runs a check: `text` on every article's text; `editorial` only with a `Draft`
#: (the topic, title and prompts), section by section, after the editorial repairs.
Phase = Literal["text", "editorial"]
#: What the gate does with a check for one article: run it, list it as skipped (switched off, or
#: the draft lacks what it needs), or leave it out (nothing configured: not listed anywhere).
Mode = Literal["run", "skip", "absent"]


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckPolicy(Policy):
    """An editorial check with nothing to tune but whether it runs."""

    enabled: bool = True


@dataclass(frozen=True)
class Draft:
    """What the checks read of one generated article."""

    topic: str
    title: str
    outline: Sequence[str]
    sections: Sequence[tuple[str, str]]
    language: str
    #: The rendered outline prompt (all messages), and each section's, as sent.
    outline_prompt: str | None = None
    section_prompts: Sequence[str | None] = ()
    #: Values the pipeline filled into the prompts that the text may repeat (topic, title; the outline's
    #: headings are added for the section prompts); not the vars, which are instructions.
    fills: Sequence[str] = ()
    #: The expansion stage's max_tokens: the slot a section had.
    section_max_tokens: int | None = None
    #: The article's Markdown and each section's finish reason (set by the gate).
    markdown: str = ""
    finish_reasons: Sequence[str | None] = ()
    #: What each check's repair did, by check name (findings; set by the gate).
    repaired: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    #: How the title call ended ("stop", "length"; None: not known).
    title_finish_reason: str | None = None

    #: Each section's body parsed once (markdown-it tokens, and its prose views), from the draft's
    #: construction on: the checks read them (`draft.documents[i].tokens`, `.prose()`), and while the
    #: draft lives `copydesk.prose.document(body)` returns the same objects. A repaired draft is a new
    #: `Draft`, which parses only the bodies that changed.
    documents: tuple[Document, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "documents", tuple(document(body) for _, body in self.sections))


@dataclass(frozen=True)
class CheckEnv:
    """What the gate shares with every check: the spec's language and the language detector."""

    language: str
    detector: Any = None


@dataclass(frozen=True)
class Repair:
    """One check's repair of a draft: the repaired draft, what changed (evidence, one finding
    per change) and the line `Verdict.repairs` gets when something changed."""

    draft: Draft
    findings: tuple[dict[str, Any], ...]
    note: str


class Check(Protocol):
    name: ClassVar[str]
    phase: ClassVar[Phase]
    #: The keys this check adds to the spec's `qc:` section: name -> (type, pydantic Field).
    fields: ClassVar[Mapping[str, tuple[Any, Any]]]

    def enabled(self) -> bool: ...

    def mode(self, draft: Draft) -> Mode: ...

    def run(self, draft: Draft) -> CheckResult: ...

    def repair(self, draft: Draft) -> Repair | None: ...


def policy_field(model: type[Policy]) -> tuple[Any, Any]:
    """A `qc:` key holding `model`, defaulting to its keys' defaults."""
    return (model, Field(default_factory=model))


class BaseCheck:
    """The usual check: one `qc.<key>` mapping of `Policy` with an `enabled` key; no repair.

    A subclass names itself in its class statement: `class XCheck(BaseCheck, key="x", policy=XPolicy)`
    (`key`: its name in verdicts and its `qc:` key; `policy`: its model, `CheckPolicy` by default).
    A check with no `qc.<key>` mapping of its own sets `name` (and its `fields`) in its body instead.
    """

    name: ClassVar[str]
    key: ClassVar[str]
    phase: ClassVar[Phase] = "editorial"
    Policy: ClassVar[type[Policy]] = CheckPolicy

    def __init_subclass__(cls, *, key: str | None = None, policy: type[Policy] | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if key is not None:
            cls.name = cls.key = key
        if policy is not None:
            cls.Policy = policy
        if "fields" not in vars(cls) and "key" in vars(cls):
            cls.fields = {cls.key: policy_field(cls.Policy)}

    fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {}

    def __init__(self, qc: Any, env: CheckEnv) -> None:
        self.qc = qc
        self.env = env
        self.policy: Any = getattr(qc, self.key, None) if hasattr(self, "key") else None

    def enabled(self) -> bool:
        return bool(self.policy.enabled)

    def applies(self, draft: Draft) -> bool:
        """Whether the draft has what this check reads (else it is listed as skipped)."""
        return True

    def mode(self, draft: Draft) -> Mode:
        return "run" if self.enabled() and self.applies(draft) else "skip"

    def run(self, draft: Draft) -> CheckResult:
        raise NotImplementedError

    def repair(self, draft: Draft) -> Repair | None:
        return None

    def recorded(self, draft: Draft) -> tuple[dict[str, Any], ...]:
        """What this check's repair changed in `draft` (its findings; none without a repair)."""
        return draft.repaired.get(self.name, ())


def timed(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; an exception becomes "could not run" (never a pass)."""
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a bug or a missing model must not publish the article
        result = CheckResult.not_run(name, f"{type(exc).__name__}: {exc}")
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 6))


def repair_sections(
    draft: Draft, fix: Callable[[int, str, str], tuple[str, list[dict[str, Any]]]]
) -> tuple[Draft, tuple[dict[str, Any], ...]]:
    """`draft` with each section's body passed through `fix(number, heading, body)` (1-based), and
    the findings it returned, in section order."""
    sections = []
    found: list[dict[str, Any]] = []
    for i, (heading, body) in enumerate(draft.sections):
        body, changed = fix(i + 1, heading, body)
        sections.append((heading, body))
        found += changed
    return dataclasses.replace(draft, sections=sections), tuple(found)


def repair_each(draft: Draft, transform: Callable[[str], tuple[str, Sequence[str]]], action: str,
                note: str) -> Repair:
    """The repair that passes each section's body through `transform(body)`, which gives the new body
    and the texts it changed, each recorded as a finding of its section with `action`. `note` is the
    line for `Verdict.repairs` (a `repair_note`: `{changes}`, `{sections}`)."""
    def fix(n: int, heading: str, body: str) -> tuple[str, list[dict[str, Any]]]:
        body, changed = transform(body)
        return body, [finding(n, heading, text, action=action) for text in changed]

    repaired, found = repair_sections(draft, fix)
    return Repair(repaired, found, repair_note(note, found))


def run_checks(checks: Sequence[Check], draft: Draft) -> tuple[list[CheckResult], list[str]]:
    """Each check's result on `draft`, in order, and the names of those skipped."""
    results: list[CheckResult] = []
    skipped: list[str] = []
    for check in checks:
        mode = check.mode(draft)
        if mode == "run":
            results.append(timed(check.name, lambda check=check: check.run(draft)))
        elif mode == "skip":
            skipped.append(check.name)
    return results, skipped


def apply_repairs(checks: Sequence[Check], draft: Draft) -> tuple[Draft, list[str]]:
    """`draft` after each enabled check's repair, in order, and what they did (one line each)."""
    notes: list[str] = []
    repaired = dict(draft.repaired)
    for check in checks:
        if not check.enabled():
            continue
        done = check.repair(draft)
        if done is None:
            continue
        draft = done.draft
        repaired[check.name] = done.findings
        if done.findings:
            notes.append(done.note)
    return dataclasses.replace(draft, repaired=repaired), notes
