"""Every per-article QC result on the labelled sets, as JSON: to show that a change to the checks'
code changes no result (diff the output before and after).

    .venv/bin/python bench/qc_verdicts.py > before.json   # on the old code
    .venv/bin/python bench/qc_verdicts.py > after.json    # on the new code
    diff before.json after.json                           # must be empty

Each article of tests/fixtures/gate_eval and tests/fixtures/gate_heldout goes through
`QualityGate.assess` with its rendered prompts, in order, as `bench/gate_eval.py` runs it
(grammar and moderation off), under two policies: the evaluation's, and one with the
optional branches on (truncation trim, links strip, topic coverage, relevance ignore terms,
headings reviewed rather than demoted). Written per article: the QC report entry
(`qc_report_entry`) without its timings, the repaired section bodies and the repairs;
and the Prefect artifact's Markdown of the article (`flows/artifacts.article_markdown`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.gate_eval import _markdown, draft_of  # noqa: E402
from copydesk.qc.gate import QualityGate, qc_report_entry  # noqa: E402
from copydesk.spec import QCSpec  # noqa: E402

SETS = [ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json",
        ROOT / "tests" / "fixtures" / "gate_heldout" / "articles.json"]

POLICIES = {
    "eval": {"grammar": {"enabled": False}, "moderation": {"enabled": False}, "min_words": 100,
             "links": {"allow": ["python.org"]}},
    "branches": {"grammar": {"enabled": False}, "moderation": {"enabled": False}, "min_words": 150,
                 "truncation": "trim", "links": {"allow": ["python.org"], "policy": "strip"},
                 "markdown": {"extra_headings": "review"}, "prompt_echo": {"sentence_share": 0.4},
                 "relevance": {"min_topic_coverage": 0.5, "ignore_terms": ["Python"]},
                 "duplication": {"max_section_overlap": 0.3}},
}


def _untimed(entry: dict) -> dict:
    entry.pop("seconds", None)
    for check in entry["checks"]:
        check.pop("seconds", None)
    return entry


async def verdicts(artifact: bool = True) -> dict:
    out: dict = {}
    if artifact:
        from flows.artifacts import article_markdown  # noqa: PLC0415
    for name, raw in POLICIES.items():
        for path in SETS:
            data = json.loads(path.read_text(encoding="utf-8"))
            gates: dict[str, QualityGate] = {}
            for article in data["articles"]:
                language = article["language"]
                gate = gates.get(language) or gates.setdefault(
                    language, QualityGate(QCSpec.model_validate(raw), language))
                draft, sections = draft_of(article, data["templates"])
                markdown = _markdown(article["title"], sections)
                verdict = await gate.assess(dataclasses.replace(
                    draft, markdown=markdown,
                    finish_reasons=[s.get("finish_reason", "stop") for s in article["sections"]]))
                entry = _untimed(qc_report_entry(verdict))
                record = {"qc": entry, "section_bodies": verdict.section_bodies,
                          "corrected": verdict.corrected_markdown}
                if artifact:
                    row = {"status": verdict.status, "topic": article["topic"], "word_count": "1",
                           "total_tokens": "2", "path": "published/x.md", "reasons": "; ".join(verdict.reasons)}
                    record["artifact"] = article_markdown(row, markdown, {"qc": entry})
                out[f"{name}/{path.parent.name}/{article['id']}"] = record
    return out


def main() -> None:
    json.dump(asyncio.run(verdicts("--no-artifact" not in sys.argv)), sys.stdout, ensure_ascii=False,
              indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
