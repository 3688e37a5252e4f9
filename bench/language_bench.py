"""Language identification for the gate: py3langid (offline model in its package) against
LanguageTool's own detection (`language=auto`), on every section of the evaluation set.

    .venv/bin/python bench/language_bench.py      # starts LanguageTool from vendor/ unless
                                                  # COPYDESK_LANGUAGETOOL_URL points at one

Labels: a section is in its article's language, except the sections the set replaced
with the other language (`wrong_language`). Prints accuracy, the sections each got
wrong, and the time per section; LanguageTool's time includes its HTTP round trip.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from copydesk.qc.language import LanguageDetector  # noqa: E402
from copydesk.text import extract_prose  # noqa: E402

SET = ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json"


def samples() -> list[tuple[str, str]]:
    data = json.loads(SET.read_text(encoding="utf-8"))
    out = []
    for article in data["articles"]:
        lang = article["language"][:2]
        label = article["label"]
        for i, section in enumerate(article["sections"], start=1):
            truth = lang
            if label["kind"] == "wrong_language" and label["section"] == i:
                truth = "zh" if lang == "en" else "en"
            text = extract_prose(section["body"]).countable_text()
            if len(text) >= 60:
                out.append((truth, text))
    return out


def main() -> None:
    items = samples()
    detector = LanguageDetector()
    started = time.perf_counter()
    detector.load()
    load = time.perf_counter() - started
    started = time.perf_counter()
    ours = [detector.detect(text)[0] for _, text in items]
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    raw = [str(detector.load().classify(text)[0]) for _, text in items]
    raw_s = time.perf_counter() - started

    os.environ.setdefault("COPYDESK_STATE_DIR", tempfile.mkdtemp(prefix="copydesk-langbench-"))
    from copydesk.services.languagetool import languagetool_url  # noqa: PLC0415
    from copydesk.settings import Settings  # noqa: PLC0415

    with languagetool_url(Settings()) as url, httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        lt = []
        for _, text in items:
            r = client.post("/v2/check", data={"text": text, "language": "auto"})
            r.raise_for_status()
            lt.append(r.json()["language"]["detectedLanguage"]["code"].split("-")[0])
        lt_s = time.perf_counter() - started

    print(f"{len(items)} sections ({sum(t == 'zh' for t, _ in items)} Chinese)")
    rows = (("copydesk (script + py3langid)", ours, ours_s), ("py3langid alone", raw, raw_s),
            ("LanguageTool auto", lt, lt_s))
    for name, got, seconds in rows:
        right = sum(g == t for g, (t, _) in zip(got, items))
        wrong = [(t, g, text[:60]) for g, (t, text) in zip(got, items) if g != t]
        print(f"{name:<30} accuracy {right / len(items):.1%}  {1000 * seconds / len(items):.2f} ms/section")
        for t, g, text in wrong[:5]:
            print(f"    expected {t}, got {g}: {text!r}")
    print(f"py3langid model load: {load:.2f} s (once per process)")


if __name__ == "__main__":
    main()
