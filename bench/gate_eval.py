"""The publish gate on its labelled evaluation set: recall and precision per check, and overall.

    .venv/bin/python bench/gate_eval.py [--set tests/fixtures/gate_eval/articles.json] [--show-misses]
    .venv/bin/python bench/gate_eval.py --set tests/fixtures/gate_heldout/articles.json   # held out

Every article of the set (tests/fixtures/gate_eval, built by bench/build_gate_eval.py
from real prose; or the held-out set, tests/fixtures/gate_heldout, built by
bench/build_gate_heldout.py from other prose, which the checks were not tuned on) goes through `QualityGate.assess` with its rendered prompts, as
`copydesk run` does, in order, through one gate (so near-duplicates of earlier
articles can be seen). Grammar and moderation are off (no LanguageTool here; they
have their own tests): this measures the editorial and content checks with the
default policy otherwise (min_words lowered to 100 for these short articles).

- A flawed article counts as caught when it is held (needs_review or rejected) or
  repaired: published, with a repair recorded, and the injected text gone.
- A clean article counts as passed when it is published.
- Per check: recall over the articles whose flaw that check is meant to catch
  (caught = it failed, or it repaired the flaw); precision = its catches over
  catches plus its firings on clean articles. Firings on articles flawed in
  another way are shown apart ("other"): they are often right (a thin section is
  also off-topic) and are neither.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from copydesk.qc.editorial import Draft  # noqa: E402
from copydesk.qc.gate import QualityGate  # noqa: E402
from copydesk.spec import QCSpec  # noqa: E402

DEFAULT_SET = ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json"

#: The check meant to catch each kind of injected flaw.
EXPECTED_CHECK = {
    "refusal": "refusal", "disclaimer": "refusal",
    "preamble": "meta_talk", "signoff": "meta_talk", "meta_middle": "meta_talk",
    "placeholder": "placeholders",
    "unclosed_fence": "markdown", "extra_heading": "markdown", "hidden_markup": "markdown",
    "wrong_language": "language",
    "duplicate_section": "duplication",
    "invented_link": "links",
    "thin": "thin_sections",
    "off_topic": "relevance",
    "echo_heading": "prompt_echo", "echo_sentence": "prompt_echo",
    "near_duplicate_article": "originality",
}
#: Failures the issue does not list (the held-out set, bench/build_gate_heldout.py) and the check
#: that is meant to catch each (kinds caught by several checks on purpose are left out).
UNLISTED_CHECK = {
    "loop_repeat": "repetition", "chat_tokens": "placeholders", "invented_citation": "citations",
    "raw_html": "markdown", "second_h1": "markdown", "wrapped_in_fence": "markdown",
    "stops_mid_word": "unfinished", "mixed_language": "language", "third_language": "language",
    "outline_list": "thin_sections", "heading_only": "thin_sections",
}
ALL_EXPECTED = {**EXPECTED_CHECK, **UNLISTED_CHECK}


@dataclass
class Outcome:
    id: str
    language: str
    flawed: bool
    kind: str | None
    status: str
    caught: bool
    fired: set[str]
    repaired_by: set[str]
    reasons: list[str]
    #: A kind of failure the issue lists (False: one it does not; None: a clean article).
    listed: bool | None = None


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    #: Seconds the gate took per article (the language model's one-off load excluded).
    seconds: list[float] = field(default_factory=list)

    @property
    def flawed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.flawed]

    @property
    def clean(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.flawed]

    @property
    def flawed_caught(self) -> float:
        return sum(o.caught for o in self.flawed) / max(1, len(self.flawed))

    @property
    def clean_published(self) -> float:
        return sum(o.status == "published" for o in self.clean) / max(1, len(self.clean))

    def per_check(self) -> dict[str, dict[str, float | int]]:
        rows: dict[str, dict[str, float | int]] = {}
        kinds = {o.kind for o in self.flawed}
        for check in sorted({c for k, c in ALL_EXPECTED.items() if k in kinds}):
            targets = [o for o in self.flawed if ALL_EXPECTED.get(o.kind or "") == check]
            hits = [o for o in targets if check in o.fired or check in o.repaired_by]
            false = [o for o in self.clean if check in o.fired]
            other = [o for o in self.flawed if check in o.fired and ALL_EXPECTED.get(o.kind or "") != check]
            rows[check] = {
                "flawed": len(targets),
                "recall": len(hits) / max(1, len(targets)),
                "precision": len(hits) / max(1, len(hits) + len(false)),
                "false_on_clean": len(false),
                "other": len(other),
            }
        return rows


def policy() -> QCSpec:
    return QCSpec.model_validate(
        {"grammar": {"enabled": False}, "moderation": {"enabled": False}, "min_words": 100,
         "links": {"allow": ["python.org"]}}
    )


def _markdown(title: str, sections: list[tuple[str, str]]) -> str:
    parts = [f"# {title}"]
    for heading, body in sections:
        parts.append(f"## {heading}")
        if body:
            parts.append(body)
    return "\n\n".join(parts) + "\n"


def draft_of(article: dict, templates: dict) -> tuple[Draft, list[tuple[str, str]]]:
    lang = article["language"][:2]
    t = templates[lang]
    sections = [(s["heading"], s["body"]) for s in article["sections"]]
    outline = [h for h, _ in sections]
    topic, title = article["topic"], article["title"]
    fills = [topic, title]
    return Draft(
        topic=topic,
        title=title,
        outline=outline,
        sections=sections,
        language=article["language"],
        outline_prompt=t["outline"].format(topic=topic, title=title),
        section_prompts=[t["section"].format(topic=topic, title=title, section=h) for h in outline],
        fills=fills,
        section_max_tokens=t["max_tokens"],
    ), sections


def _gone(injected: str | None, bodies: list[str], headings: list[str], kind: str) -> bool:
    if kind == "extra_heading":
        return not any(line.startswith(("# ", "## ")) for b in bodies for line in b.split("\n"))
    if kind == "invented_link":
        return "://" not in " ".join(bodies) and "www." not in " ".join(bodies)
    return injected is not None and all(injected.strip() not in b for b in bodies)


async def evaluate(path: Path = DEFAULT_SET) -> Report:
    data = json.loads(path.read_text(encoding="utf-8"))
    gates: dict[str, QualityGate] = {}
    report = Report()
    for article in data["articles"]:
        language = article["language"]
        gate = gates.get(language) or gates.setdefault(language, QualityGate(policy(), language))
        draft, sections = draft_of(article, data["templates"])
        gate.detector.load()
        started = time.perf_counter()
        verdict = await gate.assess(dataclasses.replace(
            draft,
            markdown=_markdown(article["title"], sections),
            finish_reasons=[s.get("finish_reason", "stop") for s in article["sections"]],
        ))
        report.seconds.append(time.perf_counter() - started)
        label = article["label"]
        fired = {c.name for c in verdict.checks if not c.passed}
        repaired_by = {
            c.name for c in verdict.checks if c.passed and any("action" in e for e in c.evidence)
        }
        bodies = verdict.section_bodies or [b for _, b in sections]
        caught = verdict.status != "published"
        if label["flawed"] and not caught and repaired_by:
            caught = _gone(label["injected"], bodies, draft.outline, label["kind"])
            if not caught:
                repaired_by = set()
        report.outcomes.append(Outcome(article["id"], language, label["flawed"], label["kind"], verdict.status,
                                       caught if label["flawed"] else verdict.status == "published",
                                       fired, repaired_by, list(verdict.reasons),
                                       label.get("listed", True) if label["flawed"] else None))
    return report


def print_report(report: Report, show_misses: bool = False) -> None:
    print(f"{len(report.outcomes)} articles: {len(report.flawed)} flawed, {len(report.clean)} clean\n")
    print(f"{'check':<15}{'flawed':>7}{'recall':>9}{'precision':>11}{'fp clean':>10}{'other':>7}")
    for check, row in report.per_check().items():
        print(f"{check:<15}{row['flawed']:>7}{row['recall']:>9.1%}{row['precision']:>11.1%}"
              f"{row['false_on_clean']:>10}{row['other']:>7}")
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in report.flawed:
        by_kind[o.kind or ""].append(o)
    print("\nflawed articles held or repaired, by kind:")
    for kind, items in sorted(by_kind.items()):
        print(f"  {kind:<24}{sum(o.caught for o in items)}/{len(items)}")
    statuses = Counter(o.status for o in report.clean)
    listed = [o for o in report.flawed if o.listed]
    unlisted = [o for o in report.flawed if not o.listed]
    if unlisted:
        print(f"\n  kinds the issue lists:     {sum(o.caught for o in listed)}/{len(listed)}")
        print(f"  kinds it does not list:    {sum(o.caught for o in unlisted)}/{len(unlisted)}")
    print(f"\nflawed held or repaired: {report.flawed_caught:.1%} (target >= 95 %)")
    print(f"clean published:         {report.clean_published:.1%} (target >= 95 %)  {dict(statuses)}")
    ordered = sorted(report.seconds)
    print(f"gate time per article (grammar and moderation off): median {1000 * ordered[len(ordered) // 2]:.1f} ms, "
          f"max {1000 * ordered[-1]:.1f} ms")
    if show_misses:
        print("\nmisses:")
        for o in report.outcomes:
            if (o.flawed and not o.caught) or (not o.flawed and o.status != "published"):
                print(f"  {o.id} {o.kind or 'clean'} -> {o.status}: {'; '.join(o.reasons)[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    print_report(asyncio.run(evaluate(args.set)), args.show_misses)


if __name__ == "__main__":
    main()
