"""CPU the per-article QC costs copydesk's own process: CPU-seconds per 100 articles.

    .venv/bin/python bench/qc_cpu_bench.py [--repeat 5] [--passes 2] [--src DIR] [--moderation]

Runs `QualityGate.assess` (editorial checks, the content checks, originality; grammar off:
LanguageTool is another process; local moderation off unless --moderation) over every article
of tests/fixtures/gate_eval and tests/fixtures/gate_heldout, `--passes` times per repeat, then
the Prefect artifact's Markdown of each (`flows/artifacts.article_markdown`), and prints the
median process CPU time (time.process_time) per 100 articles of each part over `--repeat`
repeats. `--src DIR`: import copydesk (DIR/src) and the flows (DIR/flows) from another tree,
e.g. an export of the previous commit, to compare before and after on the same machine:

    git archive main src flows | tar -x -C /tmp/base
    .venv/bin/python bench/qc_cpu_bench.py --src /tmp/base; .venv/bin/python bench/qc_cpu_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = [ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json",
        ROOT / "tests" / "fixtures" / "gate_heldout" / "articles.json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--src", type=Path, default=ROOT)
    parser.add_argument("--moderation", action="store_true", help="local moderation on (profanity-check)")
    args = parser.parse_args()
    sys.path[:0] = [str(args.src / "src"), str(args.src)]
    sys.path.append(str(ROOT))

    import copydesk  # noqa: PLC0415  (first: bench.gate_eval puts this tree's src/ on the path)
    from copydesk.qc.gate import QualityGate, qc_report_entry  # noqa: PLC0415
    from copydesk.spec import QCSpec  # noqa: PLC0415
    from flows.artifacts import article_markdown  # noqa: PLC0415

    from bench.gate_eval import _markdown, draft_of  # noqa: PLC0415
    print(f"copydesk from {Path(copydesk.__file__).parent}")
    policy = QCSpec.model_validate(
        {"grammar": {"enabled": False}, "moderation": {"enabled": args.moderation, "provider": "local"},
         "min_words": 100, "links": {"allow": ["python.org"]}})
    jobs = []
    for path in SETS:
        data = json.loads(path.read_text(encoding="utf-8"))
        for article in data["articles"]:
            draft, sections = draft_of(article, data["templates"])
            jobs.append((article, draft, sections, _markdown(article["title"], sections)))

    def clear_caches() -> None:
        # Each pass starts cold, as a run's first article would: nothing an article of the previous
        # pass left in a functools cache (tokens, prose, prompt segments, stems) helps its twin.
        for name, module in list(sys.modules.items()):
            if name.startswith("copydesk"):
                for value in list(vars(module).values()):
                    if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == name:
                        value.cache_clear()

    async def gate_pass() -> list:
        clear_caches()
        gates: dict[str, QualityGate] = {}
        out = []
        for article, draft, sections, markdown in jobs:
            language = article["language"]
            gate = gates.get(language) or gates.setdefault(language, QualityGate(policy, language))
            gate.detector.load()
            if gate.moderator is not None:
                await gate.moderator.moderate(["warm up"])
            whole = dataclasses.replace(draft, markdown=markdown,
                                        finish_reasons=[s.get("finish_reason", "stop") for s in article["sections"]])
            started = time.process_time()
            verdict = await gate.assess(whole)
            out.append((time.process_time() - started, verdict, markdown, article))
        return out

    asyncio.run(gate_pass())  # warm up: models loaded, imports done
    gate_cpu, artifact_cpu = [], []
    for _ in range(args.repeat):
        spent_gate = spent_artifact = 0.0
        for _ in range(args.passes):
            results = asyncio.run(gate_pass())
            spent_gate += sum(r[0] for r in results)
            entries = [(qc_report_entry(v), v, m, a) for _, v, m, a in results]
            started = time.process_time()
            for entry, verdict, markdown, article in entries:
                row = {"status": verdict.status, "topic": article["topic"], "word_count": "1",
                       "total_tokens": "2", "path": "published/x.md", "reasons": "; ".join(verdict.reasons)}
                article_markdown(row, markdown, {"qc": entry})
            spent_artifact += time.process_time() - started
        count = args.passes * len(jobs)
        gate_cpu.append(100 * spent_gate / count)
        artifact_cpu.append(100 * spent_artifact / count)
        print(f"  repeat: gate {gate_cpu[-1]:.3f} CPU-s, artifact {artifact_cpu[-1]:.3f} CPU-s per 100 articles",
              flush=True)
    print(f"{len(jobs)} articles x {args.passes} passes x {args.repeat} repeats "
          f"(grammar off, moderation {'local' if args.moderation else 'off'})")
    print(f"gate (QualityGate.assess)     median {statistics.median(gate_cpu):.3f} CPU-s per 100 articles")
    print(f"artifact (article_markdown)   median {statistics.median(artifact_cpu):.3f} CPU-s per 100 articles")


if __name__ == "__main__":
    main()
