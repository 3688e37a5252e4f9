"""The publish gate with a fake grammar checker and the real local moderation classifier."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from copydesk.errors import ServerError, ServiceError
from copydesk.qc.check import Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.gate import QualityGate, Verdict, decide, qc_report_entry
from copydesk.qc.moderation import OPENAI_CATEGORIES, LocalModerator, ModerationResult
from copydesk.qc.grammar import GrammarPolicy
from copydesk.qc.moderation import ModerationPolicy
from copydesk.spec import QCSpec

OUTLINE = ["Why retries matter", "Configuring backoff", "Watching the logs", "Budgets"]

BODIES = {
    "Why retries matter": (
        "A flaky network call should not fail a whole pipeline. Prefect lets a task declare how many "
        "times it is retried and how long it waits between attempts. The defaults are conservative, so "
        "most teams tune them once they have seen real failure rates in production. A retry is cheap "
        "compared with rerunning a flow that already paid for twenty model calls, and it hides the short "
        "outages that every hosted API has from time to time."
    ),
    "Configuring backoff": (
        "Start with a delay of one second and double it on every attempt. Cap the delay so that a long "
        "outage does not stall the run for hours, and add a little jitter so that many workers do not "
        "wake up at the same moment. When the server sends a Retry-After header, wait at least that long. "
        "Authentication errors are different: a wrong key stays wrong, so they are never retried and the "
        "run stops with a clear message instead."
    ),
    "Watching the logs": (
        "Record every retry in the logs together with the status code and the delay that was chosen. "
        "A task that only succeeds on its fifth attempt is a warning sign even though the run is green. "
        "Dashboards that plot attempts per call make such drift visible long before it turns into an "
        "incident, and they help when you negotiate higher rate limits with the provider."
    ),
    "Budgets": (
        "Token budgets protect the monthly bill. Reserve the worst case before each call and settle the "
        "real usage afterwards, so that concurrent calls can never overshoot the cap. When the budget "
        "runs out, stop starting new calls, export everything that is finished, and mark the rest as "
        "incomplete so that nobody mistakes a partial article for a finished one. A budget alert at eighty "
        "percent gives the team time to react before the hard stop."
    ),
}

INSULT = "Anyone who disagrees is a stupid idiot and should shut up."

ZH_OUTLINE = ["为什么需要重试", "配置退避"]
ZH_BODIES = {
    "为什么需要重试": (
        "网络调用偶尔失败，不应该让整个流水线停下来。任务可以声明重试次数和两次尝试之间的等待时间。"
        "默认值比较保守，团队通常在看到真实的失败率之后再调整。重试的成本远低于重新运行一个已经调用了二十次模型的流程，"
        "而且可以掩盖托管接口时常出现的短暂故障。"
    ),
    "配置退避": (
        "第一次等待一秒，之后每次加倍。为等待时间设置上限，避免长时间故障拖住整个运行，并加入少量随机抖动，"
        "让大量工作进程不会在同一时刻醒来。如果服务器返回了等待时间，至少要等待那么久。认证错误则不同："
        "错误的密钥不会自己变对，所以从不重试，运行会带着清晰的提示停止。"
    ),
}


def article(bodies: dict[str, str], title: str = "Retries without regrets") -> tuple[str, list[tuple[str, str]]]:
    sections = list(bodies.items())
    markdown = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in sections) + "\n"
    return markdown, sections


@dataclass
class FakeReport:
    words: int
    issues: int
    issues_per_100_words: float
    top_rules: list[tuple[str, int]] = field(default_factory=list)
    matches: list[dict[str, Any]] = field(default_factory=list)
    corrected_text: str | None = None


class FakeGrammar:
    """Stands in for copydesk.qc.grammar.GrammarChecker: a synchronous `check(markdown)`."""

    def __init__(self, issues: int = 0, *, error: Exception | None = None, corrected: str | None = None) -> None:
        self.issues = issues
        self.error = error
        self.corrected = corrected
        self.calls: list[str] = []
        self.threads: list[threading.Thread] = []

    def check(self, markdown: str) -> FakeReport:
        self.calls.append(markdown)
        self.threads.append(threading.current_thread())
        if self.error is not None:
            raise self.error
        words = len(markdown.split())
        matches = [
            {"rule_id": "MORFOLOGIK_RULE_EN_US", "offset": i * 10, "message": "Possible spelling mistake"}
            for i in range(self.issues)
        ]
        return FakeReport(
            words=words,
            issues=self.issues,
            issues_per_100_words=round(100 * self.issues / words, 2),
            top_rules=[("MORFOLOGIK_RULE_EN_US", self.issues)] if self.issues else [],
            matches=matches,
            corrected_text=self.corrected,
        )


class FakeModerator:
    """A moderator that reads any language and answers what it is told."""

    name = "fake"
    languages = None

    def __init__(self, *, flagged: bool = False, error: Exception | None = None) -> None:
        self.flagged = flagged
        self.error = error

    async def moderate(self, texts: list[str]) -> ModerationResult:
        if self.error is not None:
            raise self.error
        scores = dict.fromkeys(OPENAI_CATEGORIES, 0.01)
        categories = dict.fromkeys(OPENAI_CATEGORIES, False)
        if self.flagged:
            scores["violence"], categories["violence"] = 0.97, True
        return ModerationResult(self.flagged, categories, scores, self.name, ["excerpt"] if self.flagged else [])


@pytest.fixture(scope="module")
def local() -> LocalModerator:
    moderator = LocalModerator(0.8)
    moderator.load()
    return moderator


def gate(policy: QCSpec | None = None, language: str = "en-US", grammar: Any = None, moderator: Any = None) -> QualityGate:
    return QualityGate(policy or QCSpec(), language, grammar_checker=grammar, moderator=moderator)


async def assess(g: QualityGate, bodies: dict[str, str], outline: list[str] = OUTLINE, finish=None) -> Verdict:
    markdown, sections = article(bodies)
    finish = finish if finish is not None else ["stop"] * len(sections)
    return await g.assess(text(markdown, outline, sections, finish, g.language), editorial=False)


def text(markdown: str, outline: list[str], sections: list[tuple[str, str]], finish: list, language: str) -> Draft:
    """An article as the gate's text checks read it: no topic, title or prompts."""
    return Draft(topic="", title="", outline=outline, sections=sections, language=language, markdown=markdown,
                 finish_reasons=finish)


# --------------------------------------------------------------------------- the verdicts


async def test_clean_article_is_published(local: LocalModerator) -> None:
    grammar = FakeGrammar(issues=1)
    verdict = await assess(gate(grammar=grammar, moderator=local), BODIES)
    assert verdict.status == "published", verdict.reasons
    assert verdict.reasons == []
    assert [c.name for c in verdict.checks] == [
        "moderation", "grammar", "length", "outline_coverage", "repetition", "truncation",
    ]
    assert all(c.ran and c.passed for c in verdict.checks)
    assert verdict.moderation_flagged is False
    assert verdict.grammar_issues == 1
    assert verdict.moderation is not None and verdict.moderation["provider"] == "local"
    assert verdict.grammar is not None and verdict.grammar["issues"] == 1
    assert verdict.seconds > 0 and all(c.seconds is not None for c in verdict.checks)
    assert grammar.threads and grammar.threads[0] is not threading.main_thread()  # ran in a worker thread


async def test_abusive_article_is_rejected_and_flagged(local: LocalModerator) -> None:
    bodies = dict(BODIES)
    bodies["Watching the logs"] += " " + INSULT
    verdict = await assess(gate(grammar=FakeGrammar(), moderator=local), bodies)
    assert verdict.status == "rejected"
    assert verdict.moderation_flagged is True
    assert verdict.moderation["flagged"] is True and verdict.moderation["categories"]["harassment"] is True
    assert verdict.moderation["flagged_sentences"] == [INSULT]
    assert verdict.reasons[0].startswith("moderation: local flagged harassment")
    assert INSULT in verdict.reasons[0]


async def test_error_ridden_article_needs_review(local: LocalModerator) -> None:
    verdict = await assess(gate(grammar=FakeGrammar(issues=40), moderator=local), BODIES)
    assert verdict.status == "needs_review"
    assert verdict.grammar_issues == 40
    (reason,) = verdict.reasons
    assert reason.startswith("grammar: ") and "issues per 100 words (max 1)" in reason
    assert "MORFOLOGIK_RULE_EN_US (40)" in reason
    assert verdict.grammar["top_rules"] == [["MORFOLOGIK_RULE_EN_US", 40]]
    assert len(verdict.grammar["matches"]) == 40


async def test_issue_density_limit_comes_from_the_policy(local: LocalModerator) -> None:
    lenient = QCSpec(grammar=GrammarPolicy(max_issues_per_100_words=15.0))
    verdict = await assess(gate(lenient, grammar=FakeGrammar(issues=40), moderator=local), BODIES)
    assert verdict.status == "published", verdict.reasons


async def test_language_tool_down_needs_review(local: LocalModerator) -> None:
    down = FakeGrammar(error=ServiceError("LanguageTool at http://127.0.0.1:8081 is not answering"))
    verdict = await assess(gate(grammar=down, moderator=local), BODIES)
    assert verdict.status == "needs_review"
    assert verdict.reasons == [
        "grammar check could not run: LanguageTool at http://127.0.0.1:8081 is not answering"
    ]
    assert verdict.grammar_issues is None and verdict.grammar is None
    (grammar_check,) = [c for c in verdict.checks if c.name == "grammar"]
    assert grammar_check.ran is False


async def test_any_checker_exception_needs_review(local: LocalModerator) -> None:
    verdict = await assess(gate(grammar=FakeGrammar(error=RuntimeError("boom")), moderator=local), BODIES)
    assert verdict.status == "needs_review"
    assert verdict.reasons == ["grammar check could not run: boom"]


async def test_missing_checker_needs_review(local: LocalModerator) -> None:
    verdict = await assess(gate(grammar=None, moderator=local), BODIES)
    assert verdict.status == "needs_review"
    assert verdict.reasons == ["grammar check could not run: no grammar checker is configured"]


async def test_moderation_failure_needs_review_never_publishes() -> None:
    broken = FakeModerator(error=ServerError("the moderation endpoint failed (HTTP 503)", status_code=503))
    verdict = await assess(gate(grammar=FakeGrammar(), moderator=broken), BODIES)
    assert verdict.status == "needs_review"
    assert verdict.moderation_flagged is None
    assert verdict.reasons == ["moderation check could not run: fake: the moderation endpoint failed (HTTP 503)"]


async def test_other_provider_flag_rejects() -> None:
    verdict = await assess(gate(grammar=FakeGrammar(), moderator=FakeModerator(flagged=True)), BODIES)
    assert verdict.status == "rejected"
    assert "fake flagged violence (0.97)" in verdict.reasons[0]


# --------------------------------------------------------------------------- disabled checks


async def test_disabled_checks_are_skipped(local: LocalModerator) -> None:
    policy = QCSpec(
        grammar=GrammarPolicy(enabled=False),
        moderation=ModerationPolicy(enabled=False),
        require_outline_coverage=False,
    )
    grammar = FakeGrammar(issues=40)
    bodies = dict(BODIES)
    bodies["Budgets"] += " " + INSULT
    verdict = await assess(gate(policy, grammar=grammar, moderator=local), bodies, outline=OUTLINE + ["Missing"])
    assert verdict.status == "published", verdict.reasons
    assert grammar.calls == []
    assert verdict.skipped == ["grammar", "moderation", "outline_coverage"]
    assert [c.name for c in verdict.checks] == ["length", "repetition", "truncation"]
    assert verdict.moderation_flagged is None and verdict.grammar_issues is None
    assert verdict.moderation is None and verdict.grammar is None


def test_disabled_moderation_needs_no_moderator() -> None:
    g = QualityGate(QCSpec(moderation=ModerationPolicy(enabled=False)), "en-US")
    assert g.moderator is None


def test_openai_provider_needs_an_explicit_moderator() -> None:
    with pytest.raises(ValueError, match="choose_moderator"):
        QualityGate(QCSpec(moderation=ModerationPolicy(provider="openai")), "en-US")
    assert isinstance(QualityGate(QCSpec(), "en-US").moderator, LocalModerator)


# --------------------------------------------------------------------------- content checks through the gate


async def test_short_truncated_article_needs_review_with_both_reasons(local: LocalModerator) -> None:
    bodies = {h: b.split(". ")[0] + "." for h, b in BODIES.items()}
    verdict = await assess(
        gate(grammar=FakeGrammar(), moderator=local), bodies, finish=["stop", "length", "stop", "stop"]
    )
    assert verdict.status == "needs_review"
    assert any(r.startswith("length: ") and "fewer than min_words 300" in r for r in verdict.reasons)
    assert "truncation: cut off by max_tokens: 'Configuring backoff'" in verdict.reasons


async def test_looping_article_is_rejected(local: LocalModerator) -> None:
    loop = "The scheduler retries failed tasks with exponential backoff, starting at one second. " * 20
    bodies = {h: loop for h in OUTLINE}
    verdict = await assess(gate(grammar=FakeGrammar(), moderator=local), bodies)
    assert verdict.status == "rejected"
    assert any(r.startswith("repetition: ") and "loops" in r for r in verdict.reasons)


async def test_article_missing_most_sections_is_rejected(local: LocalModerator) -> None:
    bodies = {"Why retries matter": BODIES["Why retries matter"] * 3}
    verdict = await assess(gate(QCSpec(min_words=10), grammar=FakeGrammar(), moderator=local), bodies)
    assert verdict.status == "rejected"
    assert any(r.startswith("outline_coverage: 3 of 4") for r in verdict.reasons)


async def test_empty_article_is_rejected(local: LocalModerator) -> None:
    verdict = await gate(grammar=FakeGrammar(), moderator=local).assess(text("", OUTLINE, [], [], "en-US"),
                                                                        editorial=False)
    assert verdict.status == "rejected"
    assert "length: the article has no text" in verdict.reasons


# --------------------------------------------------------------------------- Chinese


async def test_chinese_with_local_classifier_is_not_published_silently(local: LocalModerator) -> None:
    policy = QCSpec(min_words=50)
    markdown, sections = article(ZH_BODIES, "重试的艺术")
    verdict = await gate(policy, "zh-CN", FakeGrammar(), local).assess(
        text(markdown, ZH_OUTLINE, sections, ["stop"] * 2, "zh-CN"), editorial=False)
    assert verdict.status == "needs_review"
    (reason,) = verdict.reasons
    assert reason.startswith("moderation check could not run: the local classifier reads en only")
    assert verdict.moderation_flagged is None
    assert verdict.moderation["language_not_supported"] == "zh-CN"


async def test_chinese_with_a_multilingual_moderator_is_published() -> None:
    policy = QCSpec(min_words=50)
    markdown, sections = article(ZH_BODIES, "重试的艺术")
    verdict = await gate(policy, "zh-CN", FakeGrammar(), FakeModerator()).assess(
        text(markdown, ZH_OUTLINE, sections, ["stop", None], "zh-CN"), editorial=False
    )
    assert verdict.status == "published", verdict.reasons


async def test_english_abuse_inside_a_chinese_article_is_still_rejected(local: LocalModerator) -> None:
    bodies = dict(ZH_BODIES)
    bodies["配置退避"] += " " + INSULT
    markdown, sections = article(bodies, "重试的艺术")
    verdict = await gate(QCSpec(min_words=50), "zh-CN", FakeGrammar(), local).assess(
        text(markdown, ZH_OUTLINE, sections, ["stop"] * 2, "zh-CN"), editorial=False
    )
    assert verdict.status == "rejected" and verdict.moderation_flagged is True


# --------------------------------------------------------------------------- autocorrect and the report


async def test_autocorrected_text_is_handed_back_only_when_asked(local: LocalModerator) -> None:
    markdown, _ = article(BODIES)
    fixed = markdown.replace("Prefect", "Prefect 3")
    on = QCSpec(grammar=GrammarPolicy(autocorrect=True))
    verdict = await assess(gate(on, grammar=FakeGrammar(corrected=fixed), moderator=local), BODIES)
    assert verdict.corrected_markdown == fixed and verdict.grammar["autocorrected"] is True
    verdict = await assess(gate(grammar=FakeGrammar(corrected=fixed), moderator=local), BODIES)
    assert verdict.corrected_markdown is None


async def test_qc_report_entry_is_json_with_every_check(local: LocalModerator) -> None:
    class MatchObject:  # like language_tool_python.Match: a plain object
        def __init__(self) -> None:
            self.ruleId = "EN_A_VS_AN"
            self.offset = 3
            self._private = object()

    class ObjectReport(FakeReport):
        pass

    class ObjectGrammar(FakeGrammar):
        def check(self, markdown: str) -> FakeReport:
            return ObjectReport(300, 5, 1.7, [("EN_A_VS_AN", 5)], [MatchObject()] * 5)

    verdict = await assess(gate(grammar=ObjectGrammar(), moderator=local), BODIES)
    entry = qc_report_entry(verdict)
    again = json.loads(json.dumps(entry))
    assert again["status"] == "needs_review"
    assert [c["name"] for c in again["checks"]] == [c.name for c in verdict.checks]
    assert all({"ran", "passed", "severity", "detail", "value", "seconds"} <= set(c) for c in again["checks"])
    assert again["grammar"]["matches"][0] == {"ruleId": "EN_A_VS_AN", "offset": 3}
    assert again["moderation"]["provider"] == "local"
    assert len(again["moderation"]["not_assessed"]) == 12


# --------------------------------------------------------------------------- decide()


def _c(name: str, passed: bool, severity: str = "soft", ran: bool = True) -> CheckResult:
    return CheckResult(name, passed, severity, f"{name} detail", None, ran)  # type: ignore[arg-type]


def test_decide() -> None:
    assert decide([]) == ("published", [])
    assert decide([_c("length", True), _c("grammar", True)]) == ("published", [])
    assert decide([_c("grammar", False)]) == ("needs_review", ["grammar: grammar detail"])
    assert decide([_c("grammar", False, ran=False)]) == (
        "needs_review",
        ["grammar check could not run: grammar detail"],
    )
    status, reasons = decide([_c("grammar", False), _c("length", False, "hard")])
    assert status == "rejected"
    assert reasons == ["length: length detail", "grammar: grammar detail"]  # rejections first
    # A moderation flag rejects whatever severity it was given; a moderation that did not run does not.
    assert decide([_c("moderation", False, "soft")])[0] == "rejected"
    assert decide([_c("moderation", False, "hard", ran=False)])[0] == "needs_review"
