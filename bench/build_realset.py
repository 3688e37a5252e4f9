"""Build bench/realset/articles.json from the run folders that generated the set (issue 24).

    .venv/bin/python bench/build_realset.py /tmp/realset-out/realset-tune-g /tmp/realset-out/realset-report-g

Each run folder's call store (`calls.jsonl`) holds every answer of the run. This replays the
writer (`copydesk.writer.ArticleWriter`, the shipped `pipelines/tech-blog.yaml` and its prompts,
the embedded model's name) against that store alone: every call is answered from it, none
reaches a model, and a call the store lacks fails its article. What the writer then holds is
what the gate judged: the title and how its call ended, the outline and its rendered prompt,
each section's body, finish reason and rendered prompt. The title re-ask (qc.truncated_title)
is off in the replay: the set was generated without it (bench/realset/README.md).

The half of each topic comes from bench/realset/tune.txt and report.txt. A topic the run did not
reach (its calls are not all in the store) is left out and listed under `not_generated`; an article
the run itself could not finish (an unusable outline) stays, `incomplete`, as the run held it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from copydesk.article import Article  # noqa: E402
from copydesk.callplan import CallPlan  # noqa: E402
from copydesk.calls import CallResult  # noqa: E402
from copydesk.errors import CopydeskError  # noqa: E402
from copydesk.prompts import PromptLibrary  # noqa: E402
from copydesk.spec import load_spec  # noqa: E402
from copydesk.store import CallStore  # noqa: E402
from copydesk.writer import ArticleWriter  # noqa: E402

SET = ROOT / "bench" / "realset"
SPEC = ROOT / "pipelines" / "tech-blog.yaml"
MODEL = "smollm2-135m-instruct"
#: What a call the store lacks fails its article with: the topic was not generated (run stopped).
NOT_STORED = "is not in the call store"


class StoreOnly:
    """A call gateway that answers from a call store and nothing else."""

    fallback_model = None

    def __init__(self, store: CallStore) -> None:
        self.store = store

    async def complete(self, stage, request, key, site=None):  # noqa: ANN001, ANN201 - the gateway's shape
        completion = self.store.get(key)
        if completion is None:
            raise CopydeskError(f"{stage} call {site.part if site else '?'} {NOT_STORED}")
        return CallResult(completion, cached=True)


def _halves() -> dict[str, tuple[str, int]]:
    """topic -> (its half, its 1-based line in that half's file)."""
    halves = {}
    for half in ("tune", "report"):
        topics = [line.strip() for line in (SET / f"{half}.txt").read_text(encoding="utf-8").splitlines()]
        for n, topic in enumerate((t for t in topics if t), start=1):
            halves[topic] = (half, n)
    return halves


def _record(article: Article, place: tuple[str, int], run: str) -> dict:
    half, n = place
    return {
        "id": f"{half}-{n:02d}",
        "half": half,
        "run": run,
        "topic": article.topic,
        "status": "generated" if article.generated else "incomplete",
        "reasons": list(article.reasons),
        "title": article.title,
        "title_finish_reason": article.title_finish_reason,
        "outline": list(article.outline),
        "outline_prompt": article.outline_prompt,
        "sections": [{"heading": s.heading, "body": s.body, "finish_reason": s.finish_reason, "prompt": s.prompt}
                     for s in article.sections],
    }


async def replay(run_dir: Path, halves: dict[str, tuple[str, int]]) -> list[dict]:
    spec = load_spec(SPEC)
    # The set was generated before the shipped spec gained `stages.extras`: its call stores hold no
    # extra's answer, and the gate does not judge extras, so the replay asks none.
    spec = spec.model_copy(update={"stages": spec.stages.model_copy(update={"extras": {}})})
    prompts = PromptLibrary(spec)
    plan = CallPlan.of(spec, MODEL)
    title = dataclasses.replace(plan.stages["title"], attempts=1, reask_max_tokens=None)
    plan = dataclasses.replace(plan, stages={**plan.stages, "title": title})
    store = CallStore(run_dir / "calls.jsonl")
    writer = ArticleWriter(spec, prompts, StoreOnly(store), model_override=MODEL, plan=plan)  # type: ignore[arg-type]
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    topics = manifest["topics"]
    records = []
    seen: dict[str, int] = {}
    for index, topic in enumerate(topics):
        seen[topic] = seen.get(topic, 0) + 1
        article = Article(index=index, topic=topic, key=f"{topic}\x00{seen[topic]}")
        await writer.write(article)
        records.append(_record(article, halves[topic], run_dir.name))
    store.close()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=SET / "articles.json")
    args = parser.parse_args()
    halves = _halves()
    articles = []
    for run in args.runs:
        articles += asyncio.run(replay(run, halves))
    missing = sorted(a["id"] for a in articles if any(NOT_STORED in r for r in a["reasons"]))
    articles = sorted((a for a in articles if a["id"] not in missing), key=lambda a: (a["half"] != "tune", a["id"]))
    data = {"model": MODEL, "spec": "pipelines/tech-blog.yaml", "language": "en-US",
            "not_generated": missing, "articles": articles}
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    done = sum(a["status"] == "generated" for a in articles)
    print(f"{len(articles)} articles ({done} generated, {len(articles) - done} incomplete; "
          f"{len(missing)} topics not generated) -> {args.out}")


if __name__ == "__main__":
    main()
