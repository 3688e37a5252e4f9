"""Builds the publish gate's HELD-OUT evaluation set: other prose, other prompts, other wordings.

    apt-get install -y python3.11-doc manpages-zh manpages-de git-man   # the sources, offline
    .venv/bin/python bench/build_gate_heldout.py   # writes tests/fixtures/gate_heldout/articles.json
    .venv/bin/python bench/gate_eval.py --set tests/fixtures/gate_heldout/articles.json

The tuning set (bench/build_gate_eval.py) was the ground the checks were tuned on. This
one shares none of its text, none of its prompts and none of its flaw wordings:

- English prose: Python 3.11 documentation folders the tuning set left out (`whatsnew`,
  `extending`, `c-api`, `install`, `distributing`, `installing`) and the English manual
  pages of Git (`git-man`) and of sections 5 and 8 (`/usr/share/man/man{5,8}`);
- Chinese prose: `manpages-zh` pages the tuning set did not use;
- the prompt templates are other wordings (so prompt echo is measured against these);
- the flaws of the kinds the issue lists are written anew, and a third of the flawed
  articles carry failures the issue does not list (`UNLISTED_KINDS`): a paragraph
  repeated in a loop, chat-template tokens, a "Section 3:" label instead of content, an
  invented study cited, raw HTML, a heading-only section, the outline restated as a list,
  a language switch mid-sentence, an answer that stops mid-word, a second H1 title, the
  whole section wrapped in a code fence, a German paragraph (a third language).

Deterministic (fixed seed); the output is committed. Licences: tests/fixtures/gate_heldout/README.md.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import build_gate_eval as base  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "gate_heldout" / "articles.json"
TUNING = ROOT / "tests" / "fixtures" / "gate_eval" / "articles.json"
PY_FOLDERS = ("whatsnew", "extending", "c-api", "install", "distributing", "installing")
MAN = Path("/usr/share/man")
EN_MAN_GLOBS = ("man1/git-*.1.gz", "man5/*.5.gz", "man8/*.8.gz")
SEED = 2026

TEMPLATES = {
    "en": {
        "outline": ("Propose an outline for a technical article on {topic}. Give between three and five headings, "
                    "one per line, with no commentary."),
        "section": ('You are drafting the part "{section}" of the article "{title}". Explain it clearly for '
                    "engineers who already know the basics; use full paragraphs and avoid bullet points."),
        "max_tokens": 260,
    },
    "zh": {
        "outline": "请为一篇介绍{topic}的文章拟定三到五个小节标题，每行一个，不要附加说明。",
        "section": "你正在撰写文章《{title}》的“{section}”部分。请用完整的段落向有经验的工程师解释，不要使用项目符号。",
        "max_tokens": 320,
    },
}

# --------------------------------------------------------------------------- prose


def _man_pages(globs: tuple[str, ...], used_first: set[str]) -> list[dict]:
    """English manual pages: NAME line as title, .SH sections with their prose paragraphs.
    A paragraph already used by an earlier page (shared include files such as Git's "GIT
    URLS") is skipped, so two clean articles never share text."""
    pages = []
    for pattern in globs:
        for path in sorted(MAN.glob(pattern)):
            try:
                raw = gzip.open(path).read().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            sections: list[dict] = []
            current: dict | None = None
            para: list[str] = []
            name = None

            def flush() -> None:
                if current is not None and para:
                    text = re.sub(r"\s+", " ", " ".join(base._roff_text(p) for p in para)).strip()
                    text = re.sub(r"\\\(.{2}|\\\[[^\]]*\]|\\&", "", text)
                    if (25 <= len(text.split()) <= 120 and text.endswith(".") and "\\" not in text
                            and not re.search(r"https?://|www\.", text) and text[:60] not in used_first
                            and not re.search(r"(?:^|\s)[#$] ", text)):  # shell examples joined into prose
                        used_first.add(text[:60])
                        current["paragraphs"].append(base._literal_tags(text))
                para.clear()

            for line in raw.split("\n"):
                if line.startswith(".SH"):
                    flush()
                    heading = base._roff_text(line[3:].strip().strip('"'))
                    current = {"heading": heading.title() if heading.isupper() else heading, "paragraphs": []}
                    sections.append(current)
                elif line.startswith((".PP", ".P", ".LP", ".TP", ".IP", ".sp", ".br", ".SS", ".RS", ".RE", ".nf",
                                      ".fi", ".HP")):
                    flush()
                elif line.startswith((".", "'")):
                    continue
                elif current is not None:
                    if current["heading"].upper() == "NAME" and name is None and line.strip():
                        name = base._roff_text(line)
                    elif line.strip():
                        para.append(line)
            flush()
            skip = {"NAME", "SYNOPSIS", "AUTHOR", "AUTHORS", "SEE ALSO", "COPYRIGHT", "REPORTING BUGS", "BUGS", "GIT"}
            good = [s for s in sections if s["paragraphs"] and s["heading"].upper() not in skip and base._full(s, "en")]
            if name and " - " in name and len(good) >= 3:
                command, what = (x.strip() for x in name.split(" - ", 1))
                pages.append({"source": f"man: {path.relative_to(MAN)}", "title": f"{command} --- {what}",
                              "sections": good})
    return pages


def english_pages() -> list[dict]:
    base.PY_FOLDERS = PY_FOLDERS
    pages = base.english_pages()
    for page in pages:  # links the allowlist would (rightly) hold: not clean text
        for s in page["sections"]:
            s["paragraphs"] = [p for p in s["paragraphs"] if "www." not in p]
        page["sections"] = [s for s in page["sections"] if base._full(s, "en")]
    pages = [p for p in pages if len(p["sections"]) >= 3]
    return pages + _man_pages(EN_MAN_GLOBS, set())


def chinese_pages() -> list[dict]:
    used = {a["source"] for a in json.loads(TUNING.read_text(encoding="utf-8"))["articles"]}
    return [p for p in base.chinese_pages() if p["source"] not in used]


def german_paragraphs() -> list[str]:
    """German prose from the German manual pages (many are half translated: keep paragraphs
    with several German function words and no English ones)."""
    out = []
    for path in sorted((MAN / "de").glob("man[158]/*.gz"))[:400]:
        try:
            raw = gzip.open(path).read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        para: list[str] = []
        for line in raw.split("\n") + [".PP"]:
            if line.startswith("."):
                text = re.sub(r"\s+", " ", " ".join(base._roff_text(p) for p in para)).strip()
                text = re.sub(r"\\\(.{2}|\\\[[^\]]*\]|\\&", "", text)
                words = text.lower().split()
                if (30 <= len(words) <= 90 and text.endswith(".") and "\\" not in text
                        and sum(w in {"und", "der", "die", "das", "nicht", "wird", "ist", "mit"} for w in words) >= 4
                        and not {"the", "and", "is", "of"} & set(words)):
                    out.append(text)
                para = []
            elif line.strip():
                para.append(line)
    return out


# --------------------------------------------------------------------------- flaws of the listed kinds, new wordings

REFUSALS_EN = [
    "I apologize, but I'm not able to produce this part of the article.",
    "Unfortunately, I can't write this section, since it may involve details I cannot verify.",
    "I won't be able to help with that. Is there something else you would like me to write about?",
]
DISCLAIMERS_EN = [
    "Since I don't have real-time access to the internet, some details about {thing} may be out of date.",
    "As a large language model trained by OpenAI, I have no hands-on experience with {thing}, but here is an overview.",
    "I am just an AI and cannot run code myself, so please test the following before relying on it.",
]
REFUSALS_ZH = ["对不起，我不能完成这个请求。", "抱歉，这超出了我能够回答的范围，我无法撰写本部分。"]
DISCLAIMERS_ZH = ["我只是一个AI助手，无法实际运行{thing}，以下内容仅供参考。", "由于我无法访问互联网，以下信息可能不是最新的。"]
PREAMBLES_EN = [
    "Absolutely! Below is the part you asked for.",
    'Okay, here\'s a draft of the "{heading}" part:',
    "Great question! Let's dive into {heading}.",
]
SIGNOFFS_EN = [
    "Would you like me to add code examples or adjust the tone?",
    "Happy coding! Let me know if anything here is unclear.",
    "I hope you found this useful. If you have any further questions, don't hesitate to ask!",
]
PREAMBLES_ZH = ["没问题！下面是这一部分的正文：", "好的，我来为您写“{heading}”这一部分。"]
SIGNOFFS_ZH = ["如果还有其他问题，欢迎随时提问！", "需要我再补充一些示例吗？"]
META_MIDDLE_EN = ["As instructed, I have avoided bullet points in this part.",
                  "Note to the editor: this paragraph can be shortened if space is tight."]
PLACEHOLDERS_EN = [
    "<insert code example>",
    "Our team at [Company Name] relies on this daily.",
    "Set the value to ${{PRODUCT_NAME}} before you start.",
    "FIXME: double-check this claim.",
    "(Add a screenshot of the output here.)",
    "Dolor sit amet, consectetur adipiscing elit; lorem ipsum placeholder text follows.",
]
PLACEHOLDERS_ZH = ["[此处插入代码示例]", "（待补充：实际运行截图）", "XXX 公司的工程师经常使用这个功能。", "FIXME：核实这一说法。"]
LINKS_EN = [
    "There is a good write-up on Medium: https://medium.com/@devguru/{slug}-explained-4f2a9c.",
    "The reference implementation lives at https://github.com/awesome-devtools/{slug}.",
    "See the [tutorial](http://example.com/docs/{slug}) for a walkthrough.",
]
LINKS_ZH = ["参考教程：https://blog.csdn.net/linux_fans/article/details/{num}", "更多示例见 www.jiaoben-zhijia.net/{slug}.html"]
ECHO_HEADINGS_EN = ["Between three and five headings, one per line", "Outline for a technical article on the topic"]
ECHO_SENTENCES_EN = [
    "This part is written for engineers who already know the basics, in full paragraphs and without bullet points.",
    "Explain it clearly for engineers who already know the basics.",
]
ECHO_HEADINGS_ZH = ["三到五个小节标题，每行一个", "拟定三到五个小节标题"]
FENCES = ["```\n$ ./configure --prefix=/usr\n$ make\n", "```json\n{\"retries\": 3,\n \"timeout\": 30}\n"]
HEADINGS_EN = ["### Example\n\nThe example below shows this.\n\n## Final thoughts", "## In Summary",
               "Conclusion\n----------\n\nThat covers the essentials."]
HIDDEN = ['<span style="display:none">keyword keyword keyword</span>', "<!-- generated draft, do not publish -->"]

# --------------------------------------------------------------------------- failures the issue does not list

CHAT_TOKENS = ["<|im_end|>\n<|im_start|>assistant", "### Response:", "</s>", "[/INST]", "<|eot_id|>"]
CITATIONS_EN = [
    "According to a 2021 study by the University of Cambridge, 73% of teams that adopted this saw fewer outages.",
    "A 2019 survey by Stack Overflow found that 64 percent of developers had run into this at least once.",
    "As Smith et al. (2018) showed in their paper on this subject, the gain is roughly threefold.",
]
CITATIONS_ZH = ["根据2020年清华大学的一项研究，超过70%的运维人员每天都会用到这个命令。"]
RAW_HTML = ["<p>This option is <b>important</b>.</p>", "<table><tr><td>flag</td><td>meaning</td></tr></table>",
            "<ul><li>fast</li><li>safe</li></ul>"]
MIXED_EN = ["并且它会自动处理这些情况", "これは自動的に処理されます", "и это работает автоматически"]
MIXED_ZH = ["это работает автоматически", "これは自動的に処理されます"]
UNLISTED_EN = ["loop_repeat", "chat_tokens", "section_label", "invented_citation", "raw_html", "heading_only",
               "outline_list", "mixed_language", "stops_mid_word", "second_h1", "wrapped_in_fence", "third_language"]
UNLISTED_ZH = ["loop_repeat", "chat_tokens", "section_label", "invented_citation", "outline_list", "mixed_language",
               "stops_mid_word"]
LISTED_EN = base.EN_KINDS
LISTED_ZH = base.ZH_KINDS


def _sentences(text: str, lang: str) -> list[str]:
    if lang == "en":
        return re.split(r"(?<=\.)\s+", text)
    return [s for s in re.split(r"(?<=。)", text) if s]


def inject(article: dict, kind: str, lang: str, rng: random.Random, other: dict, zh_para: str, en_para: str,
           de_para: str, earlier: list[dict]) -> dict:
    a = json.loads(json.dumps(article))
    k = rng.randrange(len(a["sections"]))
    s = a["sections"][k]
    thing = a["topic"]
    injected = None
    en = lang == "en"
    sep = "\n\n" if rng.random() < 0.5 else " "
    if kind == "refusal":
        injected = rng.choice(REFUSALS_EN if en else REFUSALS_ZH)
        s["body"] = injected if rng.random() < 0.5 else s["body"].split("\n\n")[0] + "\n\n" + injected
    elif kind == "disclaimer":
        injected = rng.choice(DISCLAIMERS_EN if en else DISCLAIMERS_ZH).format(thing=thing)
        s["body"] = s["body"] + sep + injected if rng.random() < 0.5 else injected + sep + s["body"]
    elif kind == "preamble":
        injected = rng.choice(PREAMBLES_EN if en else PREAMBLES_ZH).format(heading=s["heading"])
        s["body"] = injected + sep + s["body"]
    elif kind == "signoff":
        injected = rng.choice(SIGNOFFS_EN if en else SIGNOFFS_ZH)
        s["body"] = s["body"] + sep + injected
    elif kind == "meta_middle":
        injected = rng.choice(META_MIDDLE_EN)
        paras = s["body"].split("\n\n")
        s["body"] = "\n\n".join(paras[:1] + [injected] + paras[1:]) if len(paras) > 1 else s["body"] + " " + injected
    elif kind == "placeholder":
        injected = rng.choice(PLACEHOLDERS_EN if en else PLACEHOLDERS_ZH)
        s["body"] = s["body"] + sep + injected
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
        injected = zh_para if en else en_para
        s["body"] = injected
    elif kind == "duplicate_section":
        # near, not exact: the other section's text with its first sentence reworded
        j = (k + 1) % len(a["sections"])
        sents = _sentences(a["sections"][j]["body"], lang)
        lead = "Put simply, " if en else "简单来说，"
        injected = a["sections"][j]["body"]
        s["body"] = lead + sents[0][0].lower() + sents[0][1:] + " " + " ".join(sents[1:]) if en else lead + "".join(sents)
    elif kind == "invented_link":
        injected = rng.choice(LINKS_EN if en else LINKS_ZH).format(slug=base._slug(s["heading"]) or "guide",
                                                                   num=rng.randint(10**8, 10**9))
        s["body"] = s["body"] + " " + injected
    elif kind == "thin":
        first = _sentences(s["body"].split("\n\n")[0], lang)[0]
        injected = first if (len(first.split()) <= 22 if en else len(first) <= 40) else (
            " ".join(first.split()[:20]).rstrip(",;:") + "." if en else first[:34].rstrip("，、") + "。")
        s["body"] = injected
    elif kind == "off_topic":
        o = rng.choice(other["sections"])
        injected = "\n\n".join(o["paragraphs"][:2])
        s["heading"], s["body"] = o["heading"], injected
    elif kind == "echo_heading":
        injected = rng.choice(ECHO_HEADINGS_EN if en else ECHO_HEADINGS_ZH)
        s["heading"] = injected
    elif kind == "echo_sentence":
        injected = rng.choice(ECHO_SENTENCES_EN)
        s["body"] = s["body"] + " " + injected if rng.random() < 0.5 else injected + " " + s["body"]
    elif kind == "near_duplicate_article":
        src = rng.choice(earlier)
        a = json.loads(json.dumps(src))
        a["title"] = f"Notes on {a['topic']}" if en else f"{a['topic']} 学习笔记"
        last = a["sections"][-1]
        last["body"] = last["body"] + (" That is all there is to it." if en else "就是这些。")
        injected, k = None, None
    # ------------------------------------------------------------------ unlisted
    elif kind == "loop_repeat":
        para = s["body"].split("\n\n")[0]
        sents = _sentences(para, lang)
        if rng.random() < 0.5 or len(sents) < 2:
            injected = para
            s["body"] = "\n\n".join([para] * rng.randint(3, 4))
        else:
            injected = sents[-1]
            s["body"] = s["body"] + (" " if en else "") + (" " if en else "").join([injected] * rng.randint(4, 6))
    elif kind == "chat_tokens":
        injected = rng.choice(CHAT_TOKENS)
        s["body"] = s["body"] + "\n" + injected if rng.random() < 0.6 else injected + "\n" + s["body"]
    elif kind == "section_label":
        n = k + 1
        if rng.random() < 0.5:
            injected = f"Section {n}: {s['heading']}" if en else f"第{n}部分：{s['heading']}"
            s["body"] = injected
        else:
            injected = f"Section {n}" if en else f"第{n}节"
            s["heading"] = injected
    elif kind == "invented_citation":
        injected = rng.choice(CITATIONS_EN if en else CITATIONS_ZH)
        s["body"] = s["body"] + sep + injected
    elif kind == "raw_html":
        injected = rng.choice(RAW_HTML)
        s["body"] = s["body"] + "\n\n" + injected
    elif kind == "heading_only":
        injected = s["body"]
        s["body"] = ""
    elif kind == "outline_list":
        heads = [x["heading"] for x in a["sections"]]
        intro = "In this article we will cover:" if en else "本文将介绍以下内容："
        injected = intro + "\n\n" + "\n".join(f"{i}. {h}" for i, h in enumerate(heads, 1))
        s["body"] = injected
    elif kind == "mixed_language":
        injected = rng.choice(MIXED_EN if en else MIXED_ZH)
        sents = _sentences(s["body"], lang)
        i = rng.randrange(len(sents))
        words = sents[i].split() if en else list(sents[i])
        cut = max(1, len(words) // 2)
        sents[i] = (" ".join(words[:cut]) + " " + injected + " " + " ".join(words[cut:])) if en else (
            "".join(words[:cut]) + injected + "".join(words[cut:]))
        s["body"] = (" " if en else "").join(sents)
    elif kind == "stops_mid_word":
        text = s["body"].rstrip()
        cut = int(len(text) * rng.uniform(0.55, 0.85))
        if en:  # inside a word of 6+ letters, after its third letter
            words = [m for m in re.finditer(r"[A-Za-z]{6,}", text) if m.start() >= cut] or list(
                re.finditer(r"[A-Za-z]{6,}", text))
            cut = words[0].start() + 3
        injected = text[cut:]
        s["body"] = text[:cut]  # finish_reason stays "stop": the server said it was done
    elif kind == "second_h1":
        injected = f"# {a['title']}"
        s["body"] = injected + "\n\n" + s["body"] if rng.random() < 0.5 else s["body"] + "\n\n" + injected
    elif kind == "wrapped_in_fence":
        injected = "```markdown"
        s["body"] = "```markdown\n" + s["body"] + "\n```"
    elif kind == "third_language":
        injected = de_para
        s["body"] = de_para
    else:
        raise ValueError(kind)
    a["label"] = {"flawed": True, "kind": kind, "section": None if k is None else k + 1, "injected": injected,
                  "listed": kind in (LISTED_EN if en else LISTED_ZH)}
    return a


def make_article(page: dict, lang: str, rng: random.Random) -> dict:
    art = base.make_article(page, lang, rng)
    if lang == "en":
        art["title"] = rng.choice(["{t} explained", "Working with {t}", "What to know about {t}",
                                   "{t}: a field guide"]).format(t=art["topic"])
    else:
        art["title"] = rng.choice(["深入理解 {c}：{w}", "{c} 使用指南"]).format(c=page["command"], w=page["what"])
    return art


def build() -> dict:
    rng = random.Random(SEED)
    en_pages, zh_pages = english_pages(), chinese_pages()
    zh_paras, en_paras = base.sources(rng, en_pages, zh_pages)
    de_paras = german_paragraphs()
    articles: list[dict] = []
    # (language, clean articles, kinds, flawed per kind)
    plan = [("en", 34, LISTED_EN, 2), ("en", 0, UNLISTED_EN, 2), ("zh", 12, LISTED_ZH, 1), ("zh", 0, UNLISTED_ZH, 1)]
    cursor = {"en": 0, "zh": 0}
    clean_of = {"en": [], "zh": []}
    for lang, clean_n, kinds, per_kind in plan:
        pages = en_pages if lang == "en" else zh_pages
        for _ in range(clean_n):
            art = make_article(pages[cursor[lang] % len(pages)], lang, rng)
            cursor[lang] += 1
            art["label"] = {"flawed": False, "kind": None, "section": None, "injected": None, "listed": None}
            clean_of[lang].append(art)
            articles.append(art)
        for kind in kinds:
            for _ in range(per_kind):
                page = pages[cursor[lang] % len(pages)]
                other = pages[(cursor[lang] + 11) % len(pages)]
                cursor[lang] += 1
                articles.append(inject(make_article(page, lang, rng), kind, lang, rng, other, rng.choice(zh_paras),
                                       rng.choice(en_paras), rng.choice(de_paras) if de_paras else "", clean_of[lang]))
    for i, art in enumerate(articles, start=1):
        art["id"] = f"h{art['language'][:2]}-{i:03d}"
    print(f"pages: {len(en_pages)} English, {len(zh_pages)} Chinese; used {cursor}; {len(de_paras)} German paragraphs")
    return {"templates": TEMPLATES, "articles": articles}


def main() -> None:
    base.write(build(), OUT)


if __name__ == "__main__":
    main()
