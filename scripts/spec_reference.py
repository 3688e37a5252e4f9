"""The pipeline spec reference (docs/spec-reference.md), generated from copydesk.spec's models.

    python scripts/spec_reference.py           rewrite the generated part of the page
    python scripts/spec_reference.py --check   exit 1 when the page differs from the models

It is also an MkDocs hook (mkdocs.yml `hooks:`): at build time the page is rendered again
from the models, so the site cannot drift, and a committed page that differs from them is
a warning (an error under `mkdocs build --strict`), so the page on GitHub cannot either.

Every key of `PipelineSpec` and of the models under it gets a row: its dotted name, type,
default, bounds (from the pydantic constraints) and description. The description is the
field's `description=`, else its `#:` comment in copydesk/spec.py, plus the entry in NOTES
below for what neither says (validators, the rules of a whole model). A key with no
description at all, and a NOTES entry for a key that no longer exists, are errors.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "spec-reference.md"
PAGE_URI = "spec-reference.md"
BEGIN = "<!-- BEGIN GENERATED from copydesk.spec by scripts/spec_reference.py: do not edit by hand -->"
END = "<!-- END GENERATED -->"

#: What the models do not say themselves, by `Model.field` (the class that declares the field,
#: or a subclass). Appended to the field's own description.
NOTES: dict[str, str] = {
    "PipelineSpec.name": "The pipeline's name: lower-case letters, digits and single dashes. "
                         "The editor form's `pipeline` dropdown and deployment names use it.",
    "PipelineSpec.description": "Free text; the description of the pipeline's scheduled deployment.",
    "PipelineSpec.language": "The articles' language; also the grammar checker's language and what the "
                             "gate's language check expects (`en-US`, `zh-CN`, ...).",
    "PipelineSpec.prompts_dir": "Where template names resolve, relative to the spec's folder. It must resolve, "
                                "after symlinks, inside the spec's project (the folder that holds the spec's "
                                "folder) and may not be the project itself, a dot-folder, or copydesk's output or "
                                "state folder.",
    "PipelineSpec.system_prompt": "A template rendered as the system message of every call (optional).",
    "PipelineSpec.var_specs": "Template variables: each a plain value (its default, whose type it declares: "
                              "string, integer, number, bool, or json for lists and objects) or a declaration "
                              "with `type:` ([`vars.NAME`](#varsname)). `--var`, the editor form and "
                              "`schedule.vars` override them, only with the names declared here and values of "
                              "their type. Names are identifiers the template context does not reserve; values "
                              "are JSON-like (see Limits below).",
    "VarSpec.type": "`string` (one line), `text` (several lines), `number`, `integer`, `bool`, `choice` (one of "
                    "`choices`), `json` (any JSON-like value). The editor form draws a text field, a number "
                    "field, a switch or a dropdown accordingly.",
    "PipelineSpec.stages": "The three stages, all required, and the optional extras.",
    "PipelineSpec.budget": "The run's token budget and an optional shared allowance.",
    "PipelineSpec.concurrency": "API calls in flight, at most (`copydesk run --concurrency` overrides it). "
                                "Not used in batch mode.",
    "PipelineSpec.rate_limits": "Optional proactive limits. Not used in batch mode.",
    "PipelineSpec.qc": "The publish gate.",
    "PipelineSpec.export": "What the run writes.",
    "PipelineSpec.schedule": "Makes a scheduled Prefect deployment (`copydesk serve`, `prefect deploy`).",
    "PipelineSpec.pricing": "USD per million tokens by model name; overrides the built-in price table "
                            "(`COPYDESK_PRICES` overrides both).",
    "PipelineSpec.mode": "`copydesk run --mode` and the editor form's `mode` override it.",
    "PipelineSpec.batch": "Batch mode's own settings.",
    "StageSpec.temperature": "Sent only when written.",
    "StageSpec.top_p": "Sent only when written.",
    "StageSpec.max_tokens": "Always sent: the budget relies on it.",
    "StageSpec.presence_penalty": "Sent only when written.",
    "StageSpec.frequency_penalty": "Sent only when written.",
    "StageSpec.stop": "Sent only when written: one string, or a list of 1 to 4 non-empty strings.",
    "StageSpec.seed": "Sent only when written.",
    "OutlineStage.min_sections": "Fewest outline headings accepted; at most `max_sections`.",
    "OutlineStage.max_sections": "Most outline headings kept.",
    "OutlineStage.structured": "See [Publish gate: structured outlines](publish-gate.md#structured-outlines).",
    "Stages.title": "The title: one call per article (asked again once, with twice its `max_tokens`, when it is cut off: `qc.truncated_title`).",
    "Stages.outline": "The outline: one call per article (asked again once when it does not parse).",
    "Stages.expansion": "One call per outline section, run concurrently.",
    "Stages.extras": "Names are lower-case identifiers (`a-z`, `0-9`, `_`, at most 32 characters), also the "
                     "extra's front-matter key and CSV column; not a stage's name, nor a CSV column or front-matter "
                     "key copydesk writes itself (`title`, `status`, `date`, ...).",
    "BudgetSpec.shared": "See [Budgets and shared allowances](budgets.md).",
    "SharedBudgetSpec.name": "The operator records it first: `copydesk budget create NAME ...`.",
    "GrammarPolicy.enabled": "Check grammar and spelling with LanguageTool.",
    "GrammarPolicy.max_issues_per_100_words": "More issues per 100 words than this: `needs_review`.",
    "GrammarPolicy.ignore_rules": "LanguageTool rule ids that are not counted.",
    "GrammarPolicy.autocorrect": "Apply unambiguous spelling fixes (one suggestion) to the exported article; "
                                 "issues are counted after them.",
    "ModerationPolicy.enabled": "Moderate every article (flagged: `rejected`).",
    "ModerationPolicy.provider": "`auto`: OpenAI's moderation endpoint when an API key is configured, else the "
                                 "local classifier; `openai`: the endpoint; `local`: the local classifier "
                                 "(English only; see [Embedded services](embedded-services.md)).",
    "ModerationPolicy.threshold": "The local classifier's score at or above which a sentence flags the article.",
    "QCSpec.grammar": "The grammar check.",
    "QCSpec.moderation": "The moderation check.",
    "QCSpec.min_words": "Fewer words: `needs_review`.",
    "QCSpec.max_words": "More words: `needs_review` (unset: no upper bound).",
    "QCSpec.max_repetition": "A section repeating itself more than this share: `needs_review` (0.6 and more "
                             "is a loop: `rejected`).",
    "QCSpec.require_outline_coverage": "Every outline section must be written.",
    "QCSpec.prompt_echo": "Headings and sentences that repeat the prompt's own instructions.",
    "QCSpec.meta_talk": "\"Sure! Here is...\", \"I hope this helps\" and the like.",
    "QCSpec.refusal": "Refusals and AI disclaimers.",
    "QCSpec.placeholders": "`[Insert ...]`, `TODO`, lorem ipsum, chat-template tokens, label-only headings.",
    "QCSpec.markdown": "Markdown that breaks the article's structure.",
    "QCSpec.language": "Sections not in the spec's `language`, or switching script.",
    "QCSpec.duplication": "A section repeating another section of the article.",
    "QCSpec.originality": "Near-duplicates of articles published earlier.",
    "QCSpec.links": "Links to hosts not on the allowlist.",
    "QCSpec.thin_sections": "Sections much shorter than their `max_tokens` allows.",
    "QCSpec.relevance": "Titles and sections about something other than the topic (lexical).",
    "QCSpec.citations": "Studies, surveys and papers cited (they cannot be checked).",
    "QCSpec.unfinished": "A section that stops mid-sentence although the server said it was done.",
    "QCSpec.repair": "Rewriting a section that fails a section-level check.",
    "QCSpec.heading_depth": "Headings nested deeper than a level (the worked example of a check component; "
                            "off unless `max_depth` is set).",
    "QCSpec.truncated_title": "Titles cut off by `max_tokens` or mid-clause; asked again once before the article is held.",
    "QCSpec.task_headings": "Outline headings that name the task (\"List of …\", \"Section headings\").",
    "QCSpec.about_text": "Sentences about the text itself or its request, anywhere in a section.",
    "QCSpec.code_blocks": "Fenced code that does not parse in its declared language.",
    "CheckPolicy.enabled": "Run this check.",
    "LinksPolicy.allow": "Domain names, not URLs (`docs.python.org`).",
    "ExportSpec.markdown": "Write one Markdown file per article.",
    "ExportSpec.csv": "Write `articles.csv`.",
    "ScheduleSpec.timezone": "The cron's timezone (an IANA name).",
    "ScheduleSpec.topics": "The topics of every scheduled run (one article each).",
    "ScheduleSpec.vars": "Var overrides for the scheduled runs, under the same rules as `vars`.",
    "ScheduleSpec.cron": "Minute, hour, day, month, weekday; numbers, names (`mon`, `jan`), `*`, ranges, "
                         "lists and steps.",
}

#: Headings of the generated sections, by dotted prefix.
_TITLES = {"": "Top level"}

log = logging.getLogger("mkdocs.hooks.spec_reference")


# ----------------------------------------------------------------------------- reading the models


def _comments(cls: type) -> dict[str, str]:
    """The `#:` comment lines right above each field declared in `cls`'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                above.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            if above:
                found[node.target.id] = " ".join(above)
    return found


def _description(model: type[BaseModel], name: str, info: FieldInfo, used: set[str]) -> str:
    parts = []
    own = info.description
    if not own:
        for cls in model.__mro__:
            if isinstance(cls, type) and issubclass(cls, BaseModel) and name in _comments(cls):
                own = _comments(cls)[name]
                break
    if own:
        parts.append(own)
    for cls in model.__mro__:
        key = f"{cls.__name__}.{name}"
        if key in NOTES:
            used.add(key)
            parts.append(NOTES[key])
            break
    if not parts:
        raise SystemExit(f"spec reference: {model.__name__}.{name} has no description: give it one in "
                         "its model (copydesk/spec.py, a check's module in copydesk/qc/) or in NOTES of scripts/spec_reference.py")
    return " ".join(parts)


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        return (args[0] if len(args) == 1 else Union[tuple(args)]), optional  # noqa: UP007
    return annotation, False


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The annotation without `Annotated`, and the metadata it carried (nested FieldInfos flattened)."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return annotation, metadata


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation, _ = _unwrap(_strip_none(annotation)[0])
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _type_name(annotation: Any, path: str) -> str:
    annotation, _ = _unwrap(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg, path) for arg in get_args(annotation) if arg is not type(None))
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {_type_name(item, path)}s"
    if origin is dict:
        _, value = get_args(annotation)
        model = _model_of(value)
        if model is not None:
            return f"mapping of names to mappings ([`{path}.NAME`](#{_slug(path + '.NAME')}))"
        return "mapping of names to values"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ([`{path}`](#{_slug(path)}))"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    if annotation is Any:
        return "any value"
    raise SystemExit(f"spec reference: no name for the type {annotation!r} of {path}")


def _bounds(info: FieldInfo) -> str:
    metadata = list(info.metadata)
    annotation = _strip_none(info.annotation)[0]
    metadata += _unwrap(annotation)[1]
    found: list[str] = []
    for item in metadata:
        if isinstance(item, at.Ge):
            found.append(f"≥ {_num(item.ge)}")
        elif isinstance(item, at.Gt):
            found.append(f"> {_num(item.gt)}")
        elif isinstance(item, at.Le):
            found.append(f"≤ {_num(item.le)}")
        elif isinstance(item, at.Lt):
            found.append(f"< {_num(item.lt)}")
        elif isinstance(item, at.MinLen):
            found.append(f"at least {item.min_length} {'item' if info.annotation is list else 'character'}"
                         + ("s" if item.min_length != 1 else ""))
        elif isinstance(item, at.MaxLen):
            unit = "entries" if get_origin(annotation) is dict else "characters"
            found.append(f"at most {item.max_length} {unit}")
        elif getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
        elif type(item).__name__ == "AfterValidator" and "timezone" in getattr(item.func, "__name__", ""):
            found.append("an IANA timezone name (`Europe/Berlin`)")
    return "; ".join(found)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.default_factory() if info.default_factory is not None else info.default
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    if value is None:
        return "unset"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _slug(text: str) -> str:
    """The anchor MkDocs' toc and GitHub both give a heading written as `text` in backticks."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


# ----------------------------------------------------------------------------- the page


def spec_keys() -> list[str]:
    """Every dotted key of a pipeline spec (`pricing.NAME.input` for mapping values)."""
    from copydesk.spec import PipelineSpec

    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            path = f"{prefix}{info.alias or name}"
            keys.append(path)
            annotation = _strip_none(info.annotation)[0]
            nested = _model_of(annotation)
            if nested is not None:
                walk(nested, path + ".")
            elif get_origin(annotation) is dict and _model_of(get_args(annotation)[1]) is not None:
                walk(_model_of(get_args(annotation)[1]), path + ".NAME.")

    walk(PipelineSpec, "")
    return keys


def _sections() -> list[tuple[str, type[BaseModel]]]:
    from copydesk.spec import PipelineSpec

    found: list[tuple[str, type[BaseModel]]] = []

    def walk(model: type[BaseModel], path: str) -> None:
        found.append((path, model))
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            annotation = _strip_none(info.annotation)[0]
            sub = f"{path}.{info.alias or name}" if path else info.alias or name
            nested = _model_of(annotation)
            if nested is not None:
                walk(nested, sub)
            elif get_origin(annotation) is dict and _model_of(get_args(annotation)[1]) is not None:
                walk(_model_of(get_args(annotation)[1]), sub + ".NAME")

    walk(PipelineSpec, "")
    return found


def _limits() -> list[str]:
    from copydesk import spec
    from copydesk.sandbox import limits

    reserved = ", ".join(f"`{name}`" for name in sorted(spec.RESERVED_VARS, key=lambda name: (name.lower(), name)))
    return [
        "## Limits",
        "",
        "Checked when a spec is loaded (`copydesk.spec`) and while templates render (`copydesk.sandbox`):",
        "",
        "| limit | value |",
        "|---|---|",
        f"| spec file size | at most {spec.MAX_SPEC_BYTES // 1024} KiB |",
        f"| YAML aliases (`*name`) | at most {spec.MAX_YAML_ALIASES} uses, expanding to at most "
        f"{spec.MAX_YAML_NODES:,} values |",
        f"| YAML nesting | at most {spec.MAX_YAML_DEPTH} levels |",
        "| a key written twice in one mapping | an error naming both lines |",
        f"| vars (`vars`, `schedule.vars`, `--var`, the editor form) | at most {spec.MAX_VARS} names of at most "
        f"{spec.MAX_VAR_NAME_CHARS} characters; values nested at most {spec.MAX_VAR_DEPTH} deep, integers within "
        f"±(2⁶³−1), finite numbers; at most {spec.MAX_VARS_CHARS // 1024} KiB of JSON in all |",
        f"| reserved var names | {reserved} |",
        "| template files | " + ", ".join(f"`*{s}`" for s in spec.TEMPLATE_SUFFIXES)
        + f" UTF-8 text, at most {limits.MAX_TEMPLATE_BYTES // 1024} KiB, outside dot-folders and copydesk's "
        "output and state folders |",
        f"| one render | at most {limits.MAX_RENDER_SECONDS:g} s and {limits.MAX_RENDER_CHARS // 1024}K "
        "characters printed |",
        f"| one value a template holds | at most {limits.MAX_RENDER_CHARS // 1024}K characters and items once "
        "expanded (shared parts counted each time they are used) |",
        f"| all that one render builds | at most {limits.MAX_RENDER_WORK // (1024 * 1024)}M characters and "
        "items |",
        f"| `range(...)` in a template | at most {limits.MAX_RANGE:,} items |",
        f"| integers in a template | at most {limits.MAX_INT_BITS:,} bits |",
    ]


def render() -> str:
    """The generated part of the page (between BEGIN and END), from the models."""
    used: set[str] = set()
    out: list[str] = []
    for path, model in _sections():
        out += [f"## {_TITLES.get(path, f'`{path}`')}", ""]
        if model.__doc__ and model.__module__.startswith("copydesk.") and "__doc__" in vars(model):
            out += [" ".join(inspect.cleandoc(model.__doc__).split()), ""]
        out += ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            key = f"{path}.{info.alias or name}" if path else info.alias or name
            annotation, optional = _strip_none(info.annotation)
            kind = _type_name(annotation, key) + (", or null" if optional else "")
            row = [f"`{key}`", kind, _default(info), _bounds(info), _description(model, name, info, used)]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
    stale = sorted(set(NOTES) - used)
    if stale:
        raise SystemExit(f"spec reference: NOTES names keys the models no longer have: {', '.join(stale)}")
    out += _limits()
    return "\n".join(out) + "\n"


def with_generated(page: str, generated: str) -> str:
    """`page` with the part between BEGIN and END replaced by `generated`."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"spec reference: {PAGE} lacks the markers {BEGIN!r} ... {END!r}")
    return page[: start + len(BEGIN)] + "\n\n" + generated + "\n" + page[end:]


# ----------------------------------------------------------------------------- MkDocs hook


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE_URI:
        return markdown
    fresh = with_generated(markdown, render())
    if fresh != markdown:
        log.warning("docs/%s differs from copydesk.spec's models: run `python scripts/spec_reference.py` "
                    "and commit the page", PAGE_URI)
    return fresh


def main(argv: list[str]) -> int:
    current = PAGE.read_text(encoding="utf-8")
    fresh = with_generated(current, render())
    if "--check" in argv:
        if fresh != current:
            print(f"{PAGE.relative_to(ROOT)} differs from copydesk.spec's models: run "
                  "`python scripts/spec_reference.py`", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        PAGE.write_text(fresh, encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
