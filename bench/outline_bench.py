"""Unusable outlines from the embedded model, with and without a structured (schema-constrained) outline.

    .venv/bin/python bench/outline_bench.py --base-url http://127.0.0.1:PORT/v1 \
        [--spec pipelines/tech-blog.yaml] [--topics bench/embedded_topics.txt]

Point it at a running llama-cpp-python server (`python -m llama_cpp.server --model ...`, or the
one `copydesk services start` leaves). For every topic: one title call (the spec's title
stage), then the spec's outline prompt twice with that title, with the stage's own sampling
values: once as plain text (`structured: off`) and once with llama-cpp-python's
`{"type": "json_object", "schema": ...}` (what `structured: auto` sends to the embedded
model). An outline is unusable when `parse_outline` finds fewer than `min_sections`
headings (copydesk then asks once more, then gives the article up); headings that copy
the prompt (the prompt-echo check's test) are counted apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from copydesk.postprocess import clean_title, parse_outline  # noqa: E402
from copydesk.prompts import PromptLibrary  # noqa: E402
from copydesk.qc.echo import check_prompt_echo  # noqa: E402
from copydesk.spec import load_spec  # noqa: E402
from copydesk.writer import outline_formats  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--spec", type=Path, default=ROOT / "pipelines" / "tech-blog.yaml")
    parser.add_argument("--topics", type=Path, default=ROOT / "bench" / "embedded_topics.txt")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    prompts = PromptLibrary(spec)
    stage = spec.stages.outline
    forms = {"plain": None, "structured": outline_formats("json_object", stage.min_sections, stage.max_sections)[0]}
    topics = [t.strip() for t in args.topics.read_text(encoding="utf-8").splitlines() if t.strip()]
    results: dict[str, list[tuple[int, int]]] = {k: [] for k in forms}
    started = time.perf_counter()
    with httpx.Client(base_url=args.base_url, timeout=600) as http:
        def ask(messages: list[dict[str, str]], params: dict, form: dict | None) -> str:
            body = {"model": spec.model, "messages": messages, **params, **({"response_format": form} if form else {})}
            response = http.post("/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"] or ""

        for topic in topics:
            base = prompts.context(topic)
            title = clean_title(ask(prompts.prompt("title", base).messages(), spec.stages.title.sampling_params(), None))
            outline_prompt = prompts.prompt("outline", {**base, "title": title})
            rendered = "\n\n".join(m["content"] for m in outline_prompt.messages())
            for name, form in forms.items():
                text = ask(outline_prompt.messages(), stage.sampling_params(), form)
                headings = parse_outline(text, min_sections=stage.min_sections, max_sections=stage.max_sections)
                echo = check_prompt_echo(headings, rendered, [], [], [topic, title], spec.language,
                                         spec.qc.prompt_echo.heading_words, spec.qc.prompt_echo.sentence_words)
                results[name].append((len(headings), len(echo.evidence)))
                print(f"{name:<10} {len(headings)} headings, {len(echo.evidence)} echo  {topic!r}: {headings}", flush=True)
    print(f"\n{len(topics)} topics, {time.perf_counter() - started:.0f} s")
    print(f"{'outline':<12}{'unusable':>10}{'headings (mean)':>17}{'echo headings':>15}")
    for name, rows in results.items():
        unusable = sum(n < stage.min_sections for n, _ in rows)
        print(f"{name:<12}{f'{unusable}/{len(rows)}':>10}{sum(n for n, _ in rows) / len(rows):>17.1f}"
              f"{sum(e for _, e in rows):>15}")


if __name__ == "__main__":
    main()
