"""Builds the publish gate's labelled evaluation set from real prose available offline.

    apt-get install -y python3.11-doc manpages-zh
    .venv/bin/python bench/build_gate_eval.py        # writes tests/fixtures/gate_eval/articles.json

English articles are sections of the Python 3.11 library reference (Debian's
python3.11-doc, the reST sources under /usr/share/doc/python3.11/html/_sources);
Chinese ones are paragraphs of the Chinese manual pages (Debian's manpages-zh,
/usr/share/man/zh_CN). Each article: a topic and title from the page, the page's
section headings as the outline, one or two paragraphs per section. Some
articles are kept clean; the others get one realistic LLM failure injected into
one section (or the outline), each labelled with its kind and the text that was
injected, so a bench can tell "held" from "repaired" (the injected text is gone).

The output is deterministic (fixed seed) and committed; this script documents how
it was made. Licences: see tests/fixtures/gate_eval/README.md.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json"
PY_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
PY_FOLDERS = ("library", "howto", "tutorial", "faq", "using", "reference")
MAN_ZH = Path("/usr/share/man/zh_CN")
SEED = 12

TEMPLATES = {
    "en": {
        "outline": "I am writing a blog post about {topic}. List five short section headings for it, numbered 1 to 5.",
        "section": ('Write two paragraphs for the section "{section}" of a blog post about {topic}. Write plain prose '
                    "for working software developers in a practical tone, without headings or lists."),
        "max_tokens": 220,
    },
    "zh": {
        "outline": "我正在写一篇关于{topic}的技术文章。请列出五个简短的小节标题，用数字 1 到 5 编号。",
        "section": "请为文章《{title}》中的小节“{section}”写两段正文。面向开发者，语气务实，不要使用标题或列表。",
        "max_tokens": 300,
    },
}

# --------------------------------------------------------------------------- English prose

_ROLE = re.compile(r":[a-z:]+:`~?!?([^`]*?)`")
_UNDERLINE = re.compile(r"^([=\-~^\"'*+#])\1{3,}\s*$")


def _rst_inline(text: str) -> str:
    text = _ROLE.sub(lambda m: "`" + re.sub(r"\s+<[^<>]+>$", "", m.group(1)).strip() + "`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return _literal_tags(re.sub(r"\s+", " ", text).strip())


def _literal_tags(text: str) -> str:
    """`<word>` outside code spans put in a code span, as a Markdown author would (else it is HTML)."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if i % 2 else re.sub(r"<([A-Za-z][\w.-]*)>", r"`<\1>`", p) for i, p in enumerate(parts))


def english_pages() -> list[dict]:
    pages = []
    for path in sorted(p for folder in PY_FOLDERS for p in (PY_SOURCES / folder).glob("*.rst.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        title, sections, current, para = None, [], None, []

        def flush_para() -> None:
            if current is not None and para:
                text = _rst_inline(" ".join(para))
                words = len(text.split())
                foreign_link = re.search(r"https?://(?![\w.]*python\.org)", text)
                if (25 <= words <= 120 and text[-1:] in ".:" and not text.startswith(("..", "*", "-"))
                        and not foreign_link):
                    current["paragraphs"].append(text.rstrip(":") + ("" if text.endswith(".") else "."))
            para.clear()

        in_directive = False
        for i, line in enumerate(lines):
            if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip() and not _UNDERLINE.match(line):
                flush_para()
                heading = _rst_inline(line)
                if title is None:
                    title = heading
                else:
                    current = {"heading": heading, "paragraphs": []}
                    sections.append(current)
                continue
            if _UNDERLINE.match(line):
                continue
            if line.startswith(".."):
                flush_para()
                in_directive = True
                continue
            if not line.strip():
                flush_para()
                continue
            if line.startswith((" ", "\t")):
                if in_directive or not para:
                    continue
            else:
                in_directive = False
            if not in_directive and not line.startswith((" ", "\t", "*", "-", "|", "+", ">>>")):
                para.append(line.strip())
        flush_para()
        good = [s for s in sections if s["paragraphs"] and len(s["heading"]) < 60 and "`" not in s["heading"]
                and _full(s, "en")]
        if title and len(good) >= 3:
            source = f"python3.11-doc: {path.relative_to(PY_SOURCES)}"
            # a long page makes two articles from disjoint sections
            halves = [good] if len(good) < 6 else [good[: len(good) // 2], good[len(good) // 2:]]
            pages += [{"source": source, "title": title, "sections": half} for half in halves]
    return pages


# --------------------------------------------------------------------------- Chinese prose

_HAN = re.compile(r"[\u4e00-\u9fff]")


def _roff_text(line: str) -> str:
    line = re.sub(r"\\f[BIRPH]|\\f\(..|\\f\[[^\]]*\]", "", line)
    line = line.replace("\\-", "-").replace("\\(em", "—").replace("\\e", "\\").replace("\\ ", " ")
    line = re.sub(r"\\[&/,%|^]", "", line)
    line = re.sub(r"\\\*\(..|\\\*.", "", line)
    return line.strip()


def chinese_pages() -> list[dict]:
    pages = []
    for path in sorted(MAN_ZH.glob("man*/*.gz")):
        try:
            raw = gzip.open(path).read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        name_line, sections, current, para = None, [], None, []

        def flush() -> None:
            if current is not None and para:
                text = "".join(_roff_text(p) if _HAN.search(p) else " " + _roff_text(p) + " " for p in para)
                text = re.sub(r"\s+", " ", text).strip()
                text = _literal_tags(text)  # <file> is literal text in a man page
                han = len(_HAN.findall(text))
                if 50 <= han <= 260 and text[-1:] in "。.：:" :
                    current["paragraphs"].append(text)
            para.clear()

        for line in raw.split("\n"):
            if line.startswith(".SH"):
                flush()
                heading = _roff_text(line[3:].strip().strip('"'))
                current = {"heading": heading, "paragraphs": []}
                sections.append(current)
            elif line.startswith((".PP", ".P", ".LP", ".TP", ".IP", ".sp", ".br", ".SS", ".RS", ".RE", ".nf", ".fi")):
                flush()
            elif line.startswith(".") or line.startswith("'"):
                continue
            elif current is not None:
                if current["heading"] in ("名称", "NAME", "名字") and name_line is None and line.strip():
                    name_line = _roff_text(line)
                elif line.strip():
                    para.append(line)
        flush()
        good = [s for s in sections if s["paragraphs"] and s["heading"] not in ("名称", "NAME", "名字", "概述", "总览")
                and _full(s, "zh")]
        if name_line and " - " in name_line and len(good) >= 3:
            command, what = name_line.split(" - ", 1)
            pages.append({"source": f"manpages-zh: {path.relative_to(MAN_ZH)}",
                          "title": f"{command.strip()}：{what.strip()}", "command": command.strip(),
                          "what": what.strip(), "sections": good})
    return pages


# --------------------------------------------------------------------------- flaws

REFUSALS_EN = [
    "I'm sorry, but as an AI language model I cannot help with writing this section.",
    "I'm sorry, but I can't assist with that request. Writing about this topic could require information I don't have.",
    "I am unable to provide content for this section because I do not have access to the specific documentation.",
]
DISCLAIMERS_EN = [
    "As an AI language model, I don't have personal experience with {thing}, but I can summarise how it is usually used.",
    "Please note that as of my knowledge cutoff in 2021, this may have changed.",
    "As an AI, I do not have personal opinions, but many developers find {thing} useful.",
]
REFUSALS_ZH = ["抱歉，我无法为您撰写这一节的内容。", "很抱歉，作为一个人工智能语言模型，我不能提供这方面的具体信息。"]
DISCLAIMERS_ZH = ["作为一个AI语言模型，我没有实际使用{thing}的经验，但可以介绍一般的用法。", "请注意，截至我的知识更新时间，相关内容可能已经发生变化。"]
PREAMBLES_EN = [
    "Sure! Here is section {n} of the article, written for engineers as you asked:",
    "Certainly! Here's the expanded section on {heading}:",
    "Here is a two-paragraph section about {heading}, written in a practical tone.",
]
SIGNOFFS_EN = [
    "I hope this helps! Let me know if you'd like me to expand on any of these points.",
    "Let me know if you need any changes to this section.",
    "Feel free to ask if you would like more examples.",
]
MIDDLE_META_EN = ["As you requested, this section keeps the explanation short and practical."]
PREAMBLES_ZH = ["好的！以下是本节的内容：", "当然，下面是为您扩写的第{n}节："]
SIGNOFFS_ZH = ["希望这些内容对您有所帮助！", "如果您还需要其他修改，请告诉我。"]
PLACEHOLDERS_EN = [
    "[Insert a real-world example here]",
    "For example, {{ example_code }} shows the typical call.",
    "TODO: add benchmark numbers.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.",
    "See the official guide at [insert link] for details.",
    "Contact [Your Company Name] for enterprise support.",
]
PLACEHOLDERS_ZH = ["【在此插入实际示例】", "（此处填写具体命令输出）", "相关数据待补充。", "TODO：补充性能测试结果。"]
LINKS = [
    "For more details, see https://docs.pythontips-guide.io/advanced/patterns.html.",
    "The [official best practices guide](https://www.devbestpractices.org/python/{slug}) covers this in depth.",
    "A good walkthrough is available at www.learnpython-fast.net/tutorials/{slug}.",
]
LINKS_ZH = ["更多细节请参阅 https://www.linux-jiaocheng.cn/commands/{slug}.html 。",
            "详见[官方教程](https://docs.mingling-daquan.com/{slug})。"]
ECHO_HEADINGS_EN = [
    "Listing five short section headings for it, numbered 1 to 5",
    "Five short section headings for a blog post",
]
ECHO_SENTENCES_EN = [
    "Write plain prose for working software developers in a practical tone, without headings or lists.",
    "This is plain prose for working software developers in a practical tone, without headings or lists.",
]
ECHO_HEADINGS_ZH = ["请列出五个简短的小节标题", "五个简短的小节标题，用数字编号"]
FENCES = ["```python\nimport logging\nlogging.basicConfig(level=logging.INFO)\n", "```bash\n$ make test\n"]
HEADINGS_EN = ["## Conclusion", "## Key Takeaways\n\nThe points above are the ones to remember.", "# Summary"]
HIDDEN = ["<!-- TODO: verify these claims before publishing -->", "<div class=\"note\">Remember to check this.</div>"]

EN_KINDS = ["refusal", "disclaimer", "preamble", "signoff", "meta_middle", "placeholder", "unclosed_fence",
            "extra_heading", "hidden_markup", "wrong_language", "duplicate_section", "invented_link", "thin",
            "off_topic", "echo_heading", "echo_sentence", "near_duplicate_article"]
ZH_KINDS = ["refusal", "disclaimer", "preamble", "signoff", "placeholder", "wrong_language", "duplicate_section",
            "invented_link", "thin", "echo_heading", "unclosed_fence"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:30] or "guide"


def _size(text: str, lang: str) -> int:
    return len(text.split()) if lang == "en" else len(_HAN.findall(text))


def _body(paragraphs: list[str], lang: str) -> str:
    """Paragraphs of one section, enough for a section the prompt asked for (two paragraphs'
    worth: 60+ words, 120+ characters in Chinese), at most three."""
    chosen: list[str] = []
    for p in paragraphs[:3]:
        chosen.append(p)
        if sum(_size(c, lang) for c in chosen) >= (60 if lang == "en" else 120):
            break
    return "\n\n".join(chosen)


def _full(section: dict, lang: str) -> bool:
    return _size(_body(section["paragraphs"], lang), lang) >= (60 if lang == "en" else 120)


def make_article(page: dict, lang: str, rng: random.Random) -> dict:
    sections = rng.sample(page["sections"], k=min(len(page["sections"]), rng.choice([3, 4])))
    if lang == "en":
        topic = page["title"].split(" --- ")[-1].split(" — ")[-1]
        module = page["title"].split(" --- ")[0].strip("`")
        topic = f"{module}: {topic}" if module != topic else topic
        title = f"A practical guide to {topic}"
    else:
        topic = page["title"]
        title = f"{page['command']} 命令详解：{page['what']}"
    out = []
    for s in sections:
        out.append({"heading": s["heading"], "body": _body(s["paragraphs"], lang), "finish_reason": "stop"})
    return {"language": "en-US" if lang == "en" else "zh-CN", "source": page["source"], "topic": topic,
            "title": title, "sections": out}


def inject(article: dict, kind: str, lang: str, rng: random.Random, other: dict, zh_para: str, en_para: str,
           earlier: list[dict]) -> dict:
    """Put one flaw of `kind` into a copy of `article`; record what was injected."""
    a = json.loads(json.dumps(article))
    k = rng.randrange(len(a["sections"]))
    s = a["sections"][k]
    thing = a["topic"]
    injected = None
    if kind == "refusal":
        injected = rng.choice(REFUSALS_EN if lang == "en" else REFUSALS_ZH)
        s["body"] = injected if rng.random() < 0.6 else injected + "\n\n" + s["body"].split("\n\n")[0]
    elif kind == "disclaimer":
        injected = rng.choice(DISCLAIMERS_EN if lang == "en" else DISCLAIMERS_ZH).format(thing=thing)
        s["body"] = injected + " " + s["body"]
    elif kind == "preamble":
        injected = rng.choice(PREAMBLES_EN if lang == "en" else PREAMBLES_ZH).format(n=k + 1, heading=s["heading"])
        s["body"] = injected + ("\n\n" if rng.random() < 0.5 else " ") + s["body"]
    elif kind == "signoff":
        injected = rng.choice(SIGNOFFS_EN if lang == "en" else SIGNOFFS_ZH)
        s["body"] = s["body"] + ("\n\n" if rng.random() < 0.5 else " ") + injected
    elif kind == "meta_middle":
        injected = rng.choice(MIDDLE_META_EN)
        parts = s["body"].split(". ", 1)
        s["body"] = parts[0] + ". " + injected + (" " + parts[1] if len(parts) > 1 else "")
    elif kind == "placeholder":
        injected = rng.choice(PLACEHOLDERS_EN if lang == "en" else PLACEHOLDERS_ZH)
        s["body"] = s["body"] + ("\n\n" if rng.random() < 0.5 else " ") + injected
    elif kind == "unclosed_fence":
        injected = rng.choice(FENCES)
        s["body"] = s["body"] + "\n\n" + injected
    elif kind == "extra_heading":
        injected = rng.choice(HEADINGS_EN)
        s["body"] = s["body"] + "\n\n" + injected
    elif kind == "hidden_markup":
        injected = rng.choice(HIDDEN)
        s["body"] = s["body"] + "\n\n" + injected
    elif kind == "wrong_language":
        injected = zh_para if lang == "en" else en_para
        s["body"] = injected
    elif kind == "duplicate_section":
        j = (k + 1) % len(a["sections"])
        injected = a["sections"][j]["body"]
        s["body"] = injected
    elif kind == "invented_link":
        injected = rng.choice(LINKS if lang == "en" else LINKS_ZH).format(slug=_slug(s["heading"]) or "guide")
        s["body"] = s["body"] + " " + injected
    elif kind == "thin":
        text = s["body"].split("\n\n")[0]
        if lang == "en":
            injected = " ".join(text.split()[: rng.randint(10, 18)]).rstrip(",;:") + "."
        else:
            injected = text[: rng.randint(18, 30)] + "。"
        s["body"] = injected
    elif kind == "off_topic":
        o = rng.choice(other["sections"])
        injected = "\n\n".join(o["paragraphs"][:2])
        s["heading"], s["body"] = o["heading"], injected
    elif kind == "echo_heading":
        injected = rng.choice(ECHO_HEADINGS_EN if lang == "en" else ECHO_HEADINGS_ZH)
        s["heading"] = injected
    elif kind == "echo_sentence":
        injected = rng.choice(ECHO_SENTENCES_EN)
        s["body"] = injected + " " + s["body"]
    elif kind == "near_duplicate_article":
        base = rng.choice(earlier)
        a = json.loads(json.dumps(base))
        a["title"] = a["title"].replace("A practical guide to", "Getting started with")
        s = a["sections"][0]
        s["body"] = "In short, " + s["body"][0].lower() + s["body"][1:]
        injected = None
        k = None
    a["label"] = {"flawed": True, "kind": kind, "section": None if k is None else k + 1, "injected": injected}
    return a


def sources(rng: random.Random, en_pages: list[dict], zh_pages: list[dict]) -> tuple[list[str], list[str]]:
    """Shuffle the pages in place; the Chinese paragraphs and the long English ones (> 40 words)
    that flaws borrow from other articles."""
    rng.shuffle(en_pages)
    rng.shuffle(zh_pages)
    zh_paras = [p for page in zh_pages for s in page["sections"] for p in s["paragraphs"]]
    en_paras = [p for page in en_pages for s in page["sections"] for p in s["paragraphs"] if len(p.split()) > 40]
    return zh_paras, en_paras


def build() -> dict:
    rng = random.Random(SEED)
    en_pages, zh_pages = english_pages(), chinese_pages()
    zh_paras, en_paras = sources(rng, en_pages, zh_pages)
    articles: list[dict] = []
    plan = [("en", 40, EN_KINDS, 3), ("zh", 16, ZH_KINDS, 2)]
    for lang, clean_n, kinds, per_kind in plan:
        pages = en_pages if lang == "en" else zh_pages
        need = clean_n + len(kinds) * per_kind
        pool = pages[: need + 10]
        clean = []
        for i in range(clean_n):
            art = make_article(pool[i], lang, rng)
            art["label"] = {"flawed": False, "kind": None, "section": None, "injected": None}
            clean.append(art)
        articles += clean
        n = clean_n
        for kind in kinds:
            for _ in range(per_kind):
                base = make_article(pool[n % len(pool)], lang, rng)
                other = pool[(n + 7) % len(pool)]
                n += 1
                articles.append(inject(base, kind, lang, rng, other, rng.choice(zh_paras), rng.choice(en_paras),
                                       clean))
    for i, art in enumerate(articles, start=1):
        art["id"] = f"{art['language'][:2]}-{i:03d}"
    return {"templates": TEMPLATES, "articles": articles}


def write(data: dict, out: Path) -> None:
    """The set as JSON, one article a line (readable diffs when it is rebuilt)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(a, ensure_ascii=False) for a in data["articles"]]
    text = ('{"templates": ' + json.dumps(data["templates"], ensure_ascii=False) + ',\n "articles": [\n'
            + ",\n".join(lines) + "\n]}\n")
    out.write_text(text, encoding="utf-8")
    arts = data["articles"]
    print(f"{len(arts)} articles ({sum(a['label']['flawed'] for a in arts)} flawed), "
          f"{out.stat().st_size // 1024} KB -> {out.relative_to(ROOT)}")


def main() -> None:
    write(build(), OUT)


if __name__ == "__main__":
    main()
