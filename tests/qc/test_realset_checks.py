"""The checks issue 24 found on the embedded model's real output (bench/realset): cut-off titles,
headings that name the task, talk about the text itself, code that does not parse. Each alone,
and through the gate; the title re-ask through the writer is in tests/test_title_reask.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from test_heading_depth import BODIES

from copydesk.qc.about_text import about_findings, trim_about_text
from copydesk.qc.check import Draft
from copydesk.qc.code_blocks import broken_code
from copydesk.qc.gate import QualityGate
from copydesk.qc.registry import QCSpec
from copydesk.qc.repair import repair_note, sections_to_repair
from copydesk.qc.task_headings import task_headings
from copydesk.qc.title import title_cut_off

CLEAN = BODIES  # two clean sections about retries (the heading-depth test's)


@pytest.mark.parametrize("title, reason, why", [
    ("In a world where code is the lifeblood of innovation, why do we need a dedicated team to", "stop", "'to'"),
    ("Using Git Branches for Small Teams: A Guide to Automate and Optimize Your Team's", "stop", "possessive"),
    ("Retries in Prefect: a short guide", "length", "max_tokens"),
    ("Caching at the edge (and why", "stop", "open"),
    ("Logs, metrics and", "stop", "'and'"),
    ("Ten rules for naming things:", "stop", "':'"),
])
def test_cut_off_titles(title, reason, why):
    assert why in (title_cut_off(title, reason, "en-US") or "")


@pytest.mark.parametrize("title", ["What Not to Do", "Scaling Up", "Ship It", "Retries in Prefect: A Practical Guide",
                                   "Why Tests Fail (and How to Fix Them)", "Sorting HOW TO", "Argument Clinic How-To", "Don't Panic: Reading a Flame Graph"])
def test_finished_titles(title):
    assert title_cut_off(title, "stop", "en-US") is None


def test_other_languages_only_by_finish_reason():
    assert title_cut_off("重试的 and", "stop", "zh-CN") is None
    assert title_cut_off("重试", "length", "zh-CN") is not None


def test_task_headings():
    outline = ["List of short section headings", "Short description of the topic", "Section headings",
               "How to use feature flags in a simple blog post", "Why retries matter", "Running the post-mortem",
               "Overview of caching", "Database schema change list, numbered 1 to 5",
               "Please add a section header to this blog post"]
    found = task_headings(outline, [], topic="feature flags")
    assert [f["section"] for f in found] == [1, 2, 3, 4, 8, 9]
    assert all(f["where"] == "heading" for f in found)
    # a topic about blogs may name blogs
    assert task_headings(["Choosing a blog platform"], [], topic="Starting a tech blog platform") == []


def test_about_text_anywhere_in_a_section():
    body = ("Feature flags let you ship code that is switched off. It sounds like you're sharing this with a "
            "colleague. Teams turn flags on for a few users first, then for everyone.")
    found = about_findings([("Flags", body)])
    assert [f["text"] for f in found] == ["It sounds like you're sharing this with a colleague."]
    for sentence in ["This is a blog post on how to read a stacktrace.",
                     "Here's a sample of your writing with improved clarity and grammar:",
                     "I hope to help you with any thing that might be helpful, I am a helper.",
                     "What do you think? Is there anything about this blog post that catches your eye?",
                     "The text itself uses plain prose without headings or lists.",
                     # found in the tune half of bench/realset
                     "A: The content is well written but could be improved by adding relevant details.",
                     "Here is a sample of what I have written:", "You can customize this to fit your needs.",
                     "This includes working software developers, as you mentioned it in your blog post.",
                     "In this piece, I tried to convey the importance of selecting the right process.",
                     "I am here to assist you in creating a database schema change.",
                     "I made a few changes to improve clarity and conciseness:",
                     "The current rewritten text has been edited with grammar corrections."]:
        assert about_findings([("A", sentence)]), sentence
    assert about_findings([("A", "Send the request again and read the response headers.")]) == []


def test_trim_where_the_paragraph_stands_without_it():
    body = ("Feature flags let you ship code that is switched off. This blog post is about flags. "
            "Teams turn flags on for a few users first. Old flags must be deleted.\n\n"
            "It sounds like you're sharing this with someone. This matters a lot.\n\n#Python #TechTips")
    trimmed, cut = trim_about_text(body)
    assert cut == ["This blog post is about flags.", "#Python #TechTips"]
    assert trimmed == ("Feature flags let you ship code that is switched off. Teams turn flags on for a few users "
                       "first. Old flags must be deleted.\n\n"
                       "It sounds like you're sharing this with someone. This matters a lot.")
    # what stays (the next sentence leans on it) is still found
    assert [f["text"] for f in about_findings([("A", trimmed)])] == ["It sounds like you're sharing this with someone."]


def test_code_that_does_not_parse():
    body = ("Run it:\n\n```python\nprint(\"unterminated)\n```\n\n```json\n{\"a\": 1,}\n```\n\n"
            "```yaml\nkey: [1, 2\n```\n\n```toml\n[table\n```\n\n```bash\necho \"open\n```\n\n"
            "```python\n>>> print(1)\n1\n```\n\n```python\ndef ok():\n    return [1, 2]\n```\n\n"
            "```\nnot declared (\n```\n\n```bash\ncat <<EOF\nit's fine\nEOF\n```\n")
    found = broken_code([("Run", body)])
    assert [f["language"] for f in found] == ["python", "json", "yaml", "toml", "bash"]
    assert [f["language"] for f in broken_code([("Run", body)], shell=False)] == ["python", "json", "yaml", "toml"]


def test_policies_are_in_the_spec():
    qc = QCSpec()
    assert qc.truncated_title.reask and qc.about_text.trim and qc.code_blocks.shell and qc.task_headings.enabled
    with pytest.raises(ValidationError):
        QCSpec.model_validate({"code_blocks": {"shel": False}})


def policy(**qc) -> QCSpec:
    return QCSpec.model_validate({"grammar": {"enabled": False}, "moderation": {"enabled": False},
                                  "min_words": 50, **qc})


async def assess(gate: QualityGate, sections, title="Retries in Prefect", finish="stop"):
    markdown = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in sections) + "\n"
    outline = [h for h, _ in sections]
    draft = Draft("retries in Prefect", title, outline, sections, "en-US", title_finish_reason=finish,
                  markdown=markdown, finish_reasons=["stop"] * len(sections))
    return await gate.assess(draft)


async def test_through_the_gate():
    gate = QualityGate(policy(), "en-US")
    assert (await assess(gate, CLEAN)).status == "published"
    held = await assess(gate, CLEAN, title="Retries in Prefect for")
    assert held.status == "needs_review" and any(r.startswith("truncated_title:") for r in held.reasons)
    assert (await assess(gate, CLEAN, finish="length")).status == "needs_review"
    code = [CLEAN[0], (CLEAN[1][0], CLEAN[1][1] + "\n\n```python\nsleep(min(2 ** n, 60)\n```\n")]
    verdict = await assess(gate, code)
    assert verdict.status == "needs_review"
    targets = sections_to_repair(verdict.checks)
    assert list(targets) == [2] and "did not parse" in repair_note(targets[2], "en-US")
    heading = await assess(gate, [("List of short section headings", CLEAN[0][1]), CLEAN[1]])
    assert heading.status == "needs_review" and sections_to_repair(heading.checks) == {}


async def test_through_the_gate_talk_about_the_text_is_trimmed_or_held():
    gate = QualityGate(policy(), "en-US")
    trimmed = [(CLEAN[0][0], CLEAN[0][1].replace("Prefect lets", "This blog post is about retries. Prefect lets")),
               CLEAN[1]]
    verdict = await assess(gate, trimmed)
    assert verdict.status == "published", verdict.reasons
    assert verdict.section_bodies is not None and "blog post" not in verdict.section_bodies[0]
    alone = [CLEAN[0], (CLEAN[1][0], "This blog post is about retries. " + CLEAN[1][1])]
    held = await assess(gate, [*alone[:1], (alone[1][0], "It sounds like you're writing about backoff. "
                                                         "This is why it matters to everyone.")])
    assert held.status == "needs_review"
    assert any(r.startswith("about_text:") for r in held.reasons), held.reasons
    off = await assess(QualityGate(policy(about_text={"trim": False}), "en-US"), trimmed)
    assert off.status == "needs_review"
