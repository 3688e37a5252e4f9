"""qc.grammar.autocorrect reaches the article: `Article.apply_corrections` takes the grammar
checker's corrected Markdown back into the title, headings and sections that are exported."""

from __future__ import annotations

from types import SimpleNamespace

from copydesk.article import Article, Section
from copydesk.qc.check import Draft
from copydesk.qc.gate import QualityGate
from copydesk.qc.grammar import GrammarPolicy
from copydesk.qc.moderation import ModerationPolicy
from copydesk.spec import QCSpec


def make_article() -> Article:
    return Article(
        index=0,
        topic="spelling",
        key="spelling#1",
        title="Goverment data",
        outline=["Why it matters", "Recieving data", "Unwritten"],
        sections=[
            Section("Why it matters", "I definately agree.\n\n- a list itme\n\n```py\nx = 1\n```", "stop", True),
            Section("Recieving data", "Plain text.", "stop", True),
            Section("Unwritten"),
        ],
    )


def test_corrections_reach_title_headings_and_sections() -> None:
    article = make_article()
    markdown = article.body_markdown()
    corrected = (markdown.replace("Goverment", "Government").replace("definately", "definitely")
                 .replace("itme", "item").replace("Recieving", "Receiving"))
    assert article.apply_corrections(corrected)
    assert article.title == "Government data"
    assert article.sections[0].body == "I definitely agree.\n\n- a list item\n\n```py\nx = 1\n```"
    assert [s.heading for s in article.sections] == ["Why it matters", "Receiving data", "Unwritten"]
    assert article.outline == ["Why it matters", "Receiving data", "Unwritten"]
    assert article.sections[2].body == ""
    assert article.body_markdown() == corrected


def test_a_reshaped_text_changes_nothing() -> None:
    article = make_article()
    before = article.body_markdown()
    for broken in (
        before.replace("I definately agree.", "I definitely\nagree."),  # a line break added
        before.replace("## Recieving data", "Recieving data"),  # a heading marker lost
        before.rstrip("\n"),
        "",
    ):
        assert not article.apply_corrections(broken)
        assert article.body_markdown() == before


def test_a_topic_shown_as_title_stays_the_topic() -> None:
    article = make_article()
    article.title = ""
    corrected = article.body_markdown().replace("# spelling", "# Spelling")
    assert article.apply_corrections(corrected)
    assert article.title == "" and article.topic == "spelling"


class SpellingFixer:
    """Stands in for GrammarChecker with autocorrect on: fixes 'definately' in whatever it is given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def check(self, markdown: str) -> SimpleNamespace:
        self.seen.append(markdown)
        fixed = markdown.replace("definately", "definitely")
        return SimpleNamespace(words=len(markdown.split()), issues=0, issues_per_100_words=0.0, top_rules=[],
                               matches=[], corrected_text=fixed)


async def test_the_gate_verdict_carries_corrections_the_article_takes() -> None:
    article = make_article()
    checker = SpellingFixer()
    policy = QCSpec(grammar=GrammarPolicy(autocorrect=True), moderation=ModerationPolicy(enabled=False), min_words=1)
    gate = QualityGate(policy, "en-US", grammar_checker=checker)
    draft = Draft(topic="", title="", outline=article.outline, sections=[(s.heading, s.body) for s in article.sections],
                  language="en-US", markdown=article.body_markdown(), finish_reasons=article.finish_reasons())
    verdict = await gate.assess(draft, editorial=False)
    assert checker.seen == [article.body_markdown()]
    assert verdict.corrected_markdown is not None and article.apply_corrections(verdict.corrected_markdown)
    assert article.sections[0].body.startswith("I definitely agree.")
    assert "definately" not in article.body_markdown()
