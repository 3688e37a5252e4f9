"""The gate with a draft: editorial checks, their repairs and evidence, near-duplicates and the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copydesk.errors import SpecError
from copydesk.qc.editorial import Draft
from copydesk.qc.gate import QualityGate, qc_report_entry
from copydesk.spec import QCSpec, parse_spec

BODIES = [
    ("Why retries matter",
     "A flaky network call should not fail a whole pipeline. Prefect lets a task declare how many times it is "
     "retried and how long it waits between attempts. The defaults are conservative, so most teams tune them once "
     "they have seen real failure rates in production. A retry is cheap compared with rerunning a flow that "
     "already paid for twenty model calls."),
    ("Configuring backoff",
     "Start with a delay of one second and double it on every attempt. Cap the delay so that a long outage does not "
     "stall the run for hours, and add a little jitter so that many workers do not wake up at the same moment. When "
     "the server sends a Retry-After header, wait at least that long before the next retry."),
    ("Watching retries in the logs",
     "Record every retry in the logs together with the status code and the delay that was chosen. A task that only "
     "succeeds on its fifth attempt is a warning sign even though the run is green. Dashboards that plot retry "
     "attempts per call make such drift visible long before it turns into an incident."),
]
TOPIC = "retries in Prefect"
TITLE = "Retries in Prefect that work"


def policy(**qc) -> QCSpec:
    return QCSpec.model_validate({"grammar": {"enabled": False}, "moderation": {"enabled": False},
                                  "min_words": 50, **qc})


def markdown(sections) -> str:
    return f"# {TITLE}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in sections) + "\n"


def draft(sections, topic=TOPIC, finish=None) -> Draft:
    outline = [h for h, _ in sections]
    return Draft(topic=topic, title=TITLE, outline=outline, sections=sections, language="en-US",
                 markdown=markdown(sections), finish_reasons=finish or ["stop"] * len(sections),
                 outline_prompt=f"I am writing a blog post about {topic}. List five short section headings for it.",
                 section_prompts=[f'Write two paragraphs for the section "{h}" of a blog post about {topic}.'
                                  for h in outline],
                 fills=[topic, TITLE], section_max_tokens=200)


async def assess(gate: QualityGate, sections):
    return await gate.assess(draft(sections))


async def test_clean_article_passes_every_editorial_check():
    verdict = await assess(QualityGate(policy(), "en-US"), BODIES)
    assert verdict.status == "published", verdict.reasons
    names = {c.name for c in verdict.checks}
    assert {"prompt_echo", "meta_talk", "refusal", "placeholders", "markdown", "language", "duplication", "links",
            "thin_sections", "relevance", "originality"} <= names
    assert verdict.section_bodies is None


async def test_refusal_rejects_with_evidence_in_the_report():
    sections = [*BODIES[:2], ("Budgets", "I'm sorry, but as an AI language model I cannot help with writing this "
                                         "section. Budgets are outside what I can discuss here today.")]
    verdict = await assess(QualityGate(policy(), "en-US"), sections)
    assert verdict.status == "rejected"
    assert any(r.startswith("refusal: refusal in section 3 'Budgets'") for r in verdict.reasons)
    entry = json.loads(json.dumps(qc_report_entry(verdict)))
    refusal = next(c for c in entry["checks"] if c["name"] == "refusal")
    assert refusal["evidence"][0]["section"] == 3 and "I'm sorry" in refusal["evidence"][0]["text"]


async def test_trimmed_preamble_reaches_the_other_checks_and_the_article():
    seen = []

    class Grammar:
        def check(self, text):
            seen.append(text)
            raise RuntimeError("no grammar server")

    sections = [(BODIES[0][0], "Sure! Here is the section you asked for:\n\n" + BODIES[0][1]), *BODIES[1:]]
    gate = QualityGate(policy(grammar={"enabled": True}), "en-US", grammar_checker=Grammar())
    verdict = await assess(gate, sections)
    assert verdict.section_bodies is not None and verdict.section_bodies[0] == BODIES[0][1]
    assert "Sure!" not in seen[0]  # grammar read the repaired text
    assert verdict.repairs and "meta-talk" in verdict.repairs[0]
    assert qc_report_entry(verdict)["repairs"] == verdict.repairs


async def test_near_duplicate_in_the_run_is_held_and_the_first_published():
    gate = QualityGate(policy(), "en-US")
    first = await assess(gate, BODIES)
    second = await assess(gate, [(h, b.replace("Prefect", "Prefect 3")) for h, b in BODIES])
    assert first.status == "published"
    assert second.status == "needs_review" and any(r.startswith("originality: near-duplicate") for r in second.reasons)


async def test_near_duplicate_of_an_article_published_earlier_under_the_output_folder(tmp_path: Path):
    old = tmp_path / "run-1" / "published"
    old.mkdir(parents=True)
    (old / "retries.md").write_text("---\ntitle: x\n---\n" + markdown(BODIES), encoding="utf-8")
    current = tmp_path / "run-2"
    gate = QualityGate(policy(), "en-US", published_root=tmp_path, run_dir=current)
    verdict = await assess(gate, BODIES)
    assert verdict.status == "needs_review"
    original = next(c for c in verdict.checks if c.name == "originality")
    assert original.evidence[0]["duplicate_of"] == "run-1/published/retries.md"
    # articles of the current run's own folder (a resumed run) are not held against it
    (current / "published").mkdir(parents=True)
    (current / "published" / "retries.md").write_text(markdown(BODIES), encoding="utf-8")
    (old / "retries.md").unlink()
    again = QualityGate(policy(), "en-US", published_root=tmp_path, run_dir=current)
    assert (await assess(again, BODIES)).status == "published"
    off = QualityGate(policy(originality={"against_published": False}), "en-US", published_root=tmp_path,
                      run_dir=tmp_path / "run-3")
    assert (await assess(off, BODIES)).status == "published"


async def test_disabled_editorial_checks_are_listed_as_skipped():
    gate = QualityGate(policy(refusal={"enabled": False}, language={"enabled": False}), "en-US")
    verdict = await assess(gate, [*BODIES[:2], ("Budgets", "I'm sorry, but I cannot help with that section, "
                                                           "it needs more context than I was given here.")])
    assert {"refusal", "language"} <= set(verdict.skipped)
    assert "refusal" not in {c.name for c in verdict.checks}


BASE = """\
name: p
model: m
stages:
  title: {prompt: t.j2}
  outline: {prompt: o.j2}
  expansion: {prompt: s.j2}
qc:
  links:
    allow: [docs.python.org]
"""


@pytest.mark.parametrize("extra, field", [
    ("  links:\n    alow: [x.org]\n", "qc.links.alow"),
    ("  thin_sections:\n    min_share: 1.5\n", "qc.thin_sections.min_share"),
    ("  relevance:\n    min_shared_terms: 0\n", "qc.relevance.min_shared_terms"),
    ("  markdown:\n    extra_headings: delete\n", "qc.markdown.extra_headings"),
    ("  links:\n    allow: ['https://docs.python.org/3/']\n", "qc.links.allow"),
    ("  prompt_echo:\n    heading_words: 1\n", "qc.prompt_echo.heading_words"),
    ("  spelling: {}\n", "qc.spelling"),
])
def test_bad_qc_keys_name_the_field(tmp_path: Path, extra: str, field: str):
    text = BASE.replace("qc:\n  links:\n    allow: [docs.python.org]\n", "qc:\n" + extra)
    with pytest.raises(SpecError) as info:
        parse_spec(text, tmp_path / "p.yaml")
    assert field in str(info.value) and info.value.exit_code == 2


def test_defaults_and_a_valid_policy(tmp_path: Path):
    spec = parse_spec(BASE, tmp_path / "p.yaml")
    assert spec.qc.links.allow == ["docs.python.org"] and spec.qc.links.policy == "review"
    assert spec.qc.meta_talk.trim and spec.qc.markdown.extra_headings == "demote"
    assert spec.qc.thin_sections.min_words == 40 and spec.qc.originality.enabled


async def test_truncation_trim_cuts_back_to_the_last_sentence_and_records_it():
    cut_off = BODIES[1][1] + " Then the next retry waits for"
    sections = [BODIES[0], (BODIES[1][0], cut_off), BODIES[2]]
    reasons = ["stop", "length", "stop"]
    held = await QualityGate(policy(), "en-US").assess(draft(sections, finish=reasons))
    assert held.status == "needs_review" and any("cut off by max_tokens" in r for r in held.reasons)
    gate = QualityGate(policy(truncation="trim"), "en-US")
    verdict = await gate.assess(draft(sections, finish=reasons))
    assert verdict.status == "published", verdict.reasons
    assert verdict.section_bodies[1] == BODIES[1][1]
    check = next(c for c in verdict.checks if c.name == "truncation")
    assert check.evidence[0]["section"] == 2 and check.evidence[0]["text"] == "Then the next retry waits for"
    assert "trimmed" in verdict.repairs[0]


def test_trim_incomplete_keeps_text_without_a_sentence_end():
    from copydesk.qc.truncation import trim_incomplete

    assert trim_incomplete("no sentence end at all here") == ("no sentence end at all here", "")
    zh = "网络调用偶尔失败，不应该让整个流水线停下来。任务可以声明重试次数和两次尝试之间的等待时间。默认值比较"
    assert trim_incomplete(zh) == (zh[: zh.rindex("。") + 1], "默认值比较")
    # never more than half of the section
    assert trim_incomplete("Short. " + "and then a very long unfinished clause " * 3) [1] == ""
    assert trim_incomplete("Done. Finished.") == ("Done. Finished.", "")
