"""The publish gate on real embedded-model output (issue 24): bench/realset, judged offline.

    .venv/bin/python bench/realset_eval.py                      # both halves, counts only
    .venv/bin/python bench/realset_eval.py --half tune --show   # every tune article's verdict and label
    .venv/bin/python bench/realset_eval.py --no-grammar         # without LanguageTool (faster, not the gate)
    .venv/bin/python bench/realset_eval.py --off about_text     # with a check switched off (repeat --off)

Every article of bench/realset/articles.json (bench/build_realset.py: the writer's answers as the
gate saw them) goes through `QualityGate.assess` with the qc section of the shipped
`pipelines/tech-blog.yaml`, through one gate per half, as `copydesk run` builds it: grammar on a
LanguageTool server (COPYDESK_LANGUAGETOOL_URL, a running `copydesk services` one, or one started now),
moderation by the local classifier (`--no-moderation` leaves it out). The articles the run could not
finish (unusable outline) are held as the run holds them (incomplete). A section repair would need
the model: it is not made here, so an article a re-ask could have saved counts as held.

Against bench/realset/labels.json (read by hand, see bench/realset/README.md) it prints per half:
flawed articles published (the target is 0), clean articles held (at most 10 % of the clean ones),
and the published share (at least 50 %). `--show` lists each article; keep it off for the report
half until its figures are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from copydesk.article import Article, Section  # noqa: E402
from copydesk.qc.check import Draft  # noqa: E402
from copydesk.qc.gate import QualityGate, Verdict  # noqa: E402
from copydesk.qc.grammar import GrammarChecker  # noqa: E402
from copydesk.qc.moderation import choose_moderator  # noqa: E402
from copydesk.services.languagetool import languagetool_url  # noqa: E402
from copydesk.settings import Settings  # noqa: E402
from copydesk.spec import load_spec  # noqa: E402

SET = ROOT / "bench" / "realset"
SPEC = ROOT / "pipelines" / "tech-blog.yaml"


def article_of(record: dict[str, Any]) -> Article:
    article = Article(index=0, topic=record["topic"], key=record["id"], title=record["title"],
                      outline=list(record["outline"]), title_finish_reason=record["title_finish_reason"],
                      outline_prompt=record["outline_prompt"])
    article.sections = [Section(s["heading"], s["body"], s["finish_reason"], True, s["prompt"])
                        for s in record["sections"]]
    return article


def draft_of(article: Article, language: str, max_tokens: int) -> Draft:
    """What the article pipeline gives the gate (copydesk.article_pipeline.ArticlePipeline.draft)."""
    return Draft(topic=article.topic, title=article.title, outline=list(article.outline),
                 sections=[(s.heading, s.body) for s in article.sections], language=language,
                 outline_prompt=article.outline_prompt or None, section_prompts=[s.prompt or None for s in article.sections],
                 fills=[article.topic, article.title], section_max_tokens=max_tokens,
                 title_finish_reason=article.title_finish_reason, markdown=article.body_markdown(),
                 finish_reasons=article.finish_reasons())


async def judge(gate: QualityGate, record: dict[str, Any], language: str, max_tokens: int) -> Verdict | None:
    if record["status"] != "generated":
        return None
    article = article_of(record)
    return await gate.assess(draft_of(article, language, max_tokens))


async def evaluate(halves: list[str], grammar: bool, moderation: bool, off: tuple[str, ...] = ()
                   ) -> list[dict[str, Any]]:
    spec = load_spec(SPEC)
    qc = spec.qc.model_copy(update={"grammar": spec.qc.grammar.model_copy(update={"enabled": grammar}),
                                    "moderation": spec.qc.moderation.model_copy(update={"enabled": moderation}),
                                    **{key: getattr(spec.qc, key).model_copy(update={"enabled": False}) for key in off}})
    data = json.loads((SET / "articles.json").read_text(encoding="utf-8"))
    settings = Settings()
    rows = []
    with contextlib.ExitStack() as stack:
        checker = None
        if grammar:
            url = stack.enter_context(languagetool_url(settings))
            checker = GrammarChecker(url, spec.language, ignore_rules=qc.grammar.ignore_rules,
                                     autocorrect=qc.grammar.autocorrect)
            stack.callback(checker.close)
        moderator = choose_moderator(qc.moderation, api_key=None, base_url=None) if moderation else None
        for half in halves:
            gate = QualityGate(qc, spec.language, grammar_checker=checker, moderator=moderator)
            for record in (r for r in data["articles"] if r["half"] == half):
                verdict = await judge(gate, record, spec.language, spec.stages.expansion.max_tokens)
                rows.append({"id": record["id"], "half": half, "topic": record["topic"],
                             "status": str(verdict.status) if verdict else "incomplete",
                             "reasons": list(verdict.reasons) if verdict else record["reasons"],
                             "repairs": list(verdict.repairs) if verdict else []})
    return rows


#: The checks meant to see each labelled kind of flaw (kinds no check reads are not listed).
KIND_CHECKS = {
    "cut_title": {"truncated_title"},
    "task_heading": {"task_headings", "prompt_echo", "placeholders"},
    "about_text": {"about_text", "meta_talk", "prompt_echo"},
    "meta_talk": {"meta_talk", "about_text"},
    "broken_code": {"code_blocks"},
    "cut_section": {"truncation", "unfinished"},
    "duplicate_heading": {"duplication"},
    "off_topic": {"relevance"},
    "residue": {"about_text", "markdown", "placeholders"},
}
#: A repair's note (Verdict.repairs) -> the check that made it: what it removed was seen.
REPAIR_NOTES = {"talk about the text trimmed": "about_text", "meta-talk trimmed": "meta_talk"}
#: Checks about sections cut by max_tokens: the embedded model's most common failure.
CUT_CHECKS = {"truncation", "unfinished"}


def kind_recall(rows: list[dict[str, Any]], labels: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """kind -> (articles labelled with it whose verdict names one of its checks, or whose repairs one of
    them made, articles labelled with it)."""
    seen: dict[str, list[int]] = {}
    for row in rows:
        fired = {reason.split(":", 1)[0].split(" ", 1)[0] for reason in row["reasons"]}
        fired |= {check for note, check in REPAIR_NOTES.items() if any(r.startswith(note) for r in row["repairs"])}
        for kind in labels.get(row["id"], {}).get("flaws", []):
            if kind in KIND_CHECKS:
                hit = seen.setdefault(kind, [0, 0])
                hit[0] += bool(fired & KIND_CHECKS[kind])
                hit[1] += 1
    return {kind: (hit[0], hit[1]) for kind, hit in sorted(seen.items())}


def figures(rows: list[dict[str, Any]], labels: dict[str, Any]) -> dict[str, Any]:
    clean = [r for r in rows if labels.get(r["id"], {}).get("worthy") is True]
    flawed = [r for r in rows if labels.get(r["id"], {}).get("worthy") is False]
    published = [r for r in rows if r["status"] == "published"]
    return {
        "articles": len(rows), "labelled": len(clean) + len(flawed), "clean": len(clean), "flawed": len(flawed),
        "published": len(published),
        "flawed_published": sorted(r["id"] for r in flawed if r["status"] == "published"),
        "clean_held": sorted(r["id"] for r in clean if r["status"] != "published"),
        "statuses": dict(Counter(r["status"] for r in rows)),
        "held_without_cuts": sum(1 for r in flawed if r["status"] != "published" and any(
            reason.split(":", 1)[0].split(" ", 1)[0] not in CUT_CHECKS for reason in r["reasons"])),
        "kinds": kind_recall(rows, labels),
    }


def print_figures(half: str, f: dict[str, Any], show_ids: bool) -> None:
    share = f["published"] / f["articles"] if f["articles"] else 0.0
    held = len(f["clean_held"]) / f["clean"] if f["clean"] else 0.0
    print(f"{half}: {f['articles']} articles ({f['labelled']} labelled: {f['clean']} clean, {f['flawed']} flawed); "
          f"statuses {f['statuses']}")
    print(f"  flawed published  {len(f['flawed_published'])}  (target 0)"
          + (f"  {f['flawed_published']}" if show_ids else ""))
    print(f"  clean held        {len(f['clean_held'])}/{f['clean']} = {held:.0%}  (target <= 10 %)"
          + (f"  {f['clean_held']}" if show_ids else ""))
    print(f"  published share   {f['published']}/{f['articles']} = {share:.0%}  (target >= 50 %)")
    print(f"  flawed held for more than a section cut by max_tokens: {f['held_without_cuts']}/{f['flawed']}")
    print("  labelled flaws its checks named: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in f["kinds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--half", choices=["tune", "report", "both"], default="both")
    parser.add_argument("--show", action="store_true", help="each article's verdict, label and reasons")
    parser.add_argument("--no-grammar", action="store_true")
    parser.add_argument("--no-moderation", action="store_true")
    parser.add_argument("--json", type=Path, help="write every article's verdict here")
    parser.add_argument("--off", action="append", default=[], metavar="CHECK",
                        help="switch a check off (its qc key, e.g. about_text); repeat for more")
    args = parser.parse_args()
    halves = ["tune", "report"] if args.half == "both" else [args.half]
    labels_path = SET / "labels.json"
    labels = json.loads(labels_path.read_text(encoding="utf-8"))["labels"] if labels_path.exists() else {}
    rows = asyncio.run(evaluate(halves, not args.no_grammar, not args.no_moderation, tuple(args.off)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for half in halves:
        part = [r for r in rows if r["half"] == half]
        if args.show:
            for r in part:
                label = labels.get(r["id"], {})
                mark = {True: "clean ", False: "flawed"}.get(label.get("worthy"), "?     ")
                print(f"{r['id']} {mark} {r['status']:<12} {r['topic']}")
                for reason in r["reasons"][:4]:
                    print(f"      - {reason[:150]}")
                if label.get("flaws"):
                    print(f"      label: {label['flaws']} {label.get('evidence', '')[:120]!r}")
        print_figures(half, figures(part, labels), args.show)


if __name__ == "__main__":
    main()
