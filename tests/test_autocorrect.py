"""qc.grammar.autocorrect reaches the article: `Article.apply_corrections` takes the grammar
checker's corrected Markdown back into the title, headings and sections that are exported."""

from __future__ import annotations

from copydesk.article import Article, Section


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
