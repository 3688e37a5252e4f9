"""Pipeline specs: YAML → `yaml.safe_load` → pydantic models with `extra="forbid"`.

`load_spec(path)` is the only entry point. Every problem becomes one `SpecError`
whose message names the file, the field (as a dotted path) and, where the YAML
can tell, the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from copydesk.errors import SpecError

NAME_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
STAGE_NAMES = ("title", "outline", "expansion")
#: Names the pipeline itself puts into every template context; `vars` may not shadow them.
RESERVED_VARS = frozenset(
    {"topic", "language", "title", "outline", "section", "section_index", "section_count", "vars"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class StageSpec(_Model):
    """One generation stage. Only the sampling values written in the spec are sent,
    plus `max_tokens`, which is always sent because the budget relies on it."""

    prompt: str = Field(description="Template file name, resolved in prompts_dir.")
    model: str | None = Field(None, description="Overrides the pipeline's model for this stage.")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: int = Field(600, ge=1, le=200_000)
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: str | list[str] | None = None
    seed: int | None = None

    @field_validator(
        "temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed", mode="before"
    )
    @classmethod
    def _numbers_not_text_or_booleans(cls, value: Any) -> Any:
        # pydantic's lax mode would send `true` as 1.0 and "20" as 20; in a spec they are typos.
        if isinstance(value, (bool, str)):
            raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not 1 <= len(value) <= 4:
                raise ValueError("stop takes 1 to 4 sequences")
            if any(not s for s in value):
                raise ValueError("stop sequences must not be empty")
        elif value == "":
            raise ValueError("stop must not be empty")
        return value

    def sampling_params(self) -> dict[str, Any]:
        """The request fields this stage sends, exactly as written in the spec."""
        params: dict[str, Any] = {"max_tokens": self.max_tokens}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop", "seed"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params


class TitleStage(StageSpec):
    max_tokens: int = Field(20, ge=1, le=200_000)


class OutlineStage(StageSpec):
    max_tokens: int = Field(300, ge=1, le=200_000)
    min_sections: int = Field(3, ge=1, le=50)
    max_sections: int = Field(7, ge=1, le=50)

    @model_validator(mode="after")
    def _bounds(self) -> OutlineStage:
        if self.min_sections > self.max_sections:
            raise ValueError(
                f"min_sections ({self.min_sections}) is larger than max_sections ({self.max_sections})"
            )
        return self


class ExpansionStage(StageSpec):
    max_tokens: int = Field(600, ge=1, le=200_000)


class Stages(_Model):
    title: TitleStage
    outline: OutlineStage
    expansion: ExpansionStage

    def items(self) -> list[tuple[str, StageSpec]]:
        return [(name, getattr(self, name)) for name in STAGE_NAMES]


class BudgetSpec(_Model):
    max_total_tokens: int = Field(60_000, ge=1, description="Hard cap on usage.total_tokens for one run.")
    warn_at: float = Field(0.8, gt=0.0, le=1.0, description="Share of the budget that triggers one warning.")


class RateLimits(_Model):
    rpm: int | None = Field(None, ge=1, description="Requests per minute, at most.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (reserved upper bounds), at most.")


class GrammarPolicy(_Model):
    enabled: bool = True
    max_issues_per_100_words: float = Field(1.0, ge=0)
    ignore_rules: list[str] = Field(default_factory=list)
    autocorrect: bool = False


class ModerationPolicy(_Model):
    enabled: bool = True
    provider: Literal["auto", "openai", "local"] = "auto"
    threshold: float = Field(0.8, ge=0.0, le=1.0)


class CheckPolicy(_Model):
    """An editorial check with nothing to tune but whether it runs."""

    enabled: bool = True


class PromptEchoPolicy(CheckPolicy):
    #: A heading sharing a run of this many words with the prompt's own instructions echoes it.
    heading_words: int = Field(4, ge=2, le=20)
    #: A sentence sharing a run of this many words with the instructions echoes it.
    sentence_words: int = Field(8, ge=3, le=50)


class MetaTalkPolicy(CheckPolicy):
    #: Cut a preamble or sign-off addressed to the requester when what is left is clean text.
    trim: bool = True


class MarkdownPolicy(CheckPolicy):
    #: A heading inside a section at the level of the article's own (# or ##): demote it to ###, or hold the article.
    extra_headings: Literal["demote", "review"] = "demote"


class LanguagePolicy(CheckPolicy):
    #: Sections with fewer letters than this are too short to identify and are not judged.
    min_chars: int = Field(60, ge=1, le=10_000)


class DuplicationPolicy(CheckPolicy):
    #: Share of a section's word 5-grams found in another section of the same article.
    max_section_overlap: float = Field(0.5, gt=0.0, le=1.0)


class OriginalityPolicy(CheckPolicy):
    #: Estimated Jaccard similarity (MinHash) of two articles' word 5-grams at which the later is held.
    max_similarity: float = Field(0.5, gt=0.0, le=1.0)
    #: Compare with the articles already published under the same output folder, not only this run's.
    against_published: bool = True


class LinksPolicy(CheckPolicy):
    #: Domains whose links may be published (a domain allows its subdomains too).
    allow: list[str] = Field(default_factory=list)
    #: review: an article with any other link needs review; strip: such links are removed (text kept).
    policy: Literal["review", "strip"] = "review"

    @field_validator("allow")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if not re.fullmatch(r"(?:[a-z0-9-]+\.)+[a-z]{2,}|localhost", d.strip().lower())]
        if bad:
            raise ValueError(f"not a domain name: {', '.join(map(repr, bad))} (write docs.python.org, not a URL)")
        return [d.strip().lower() for d in value]


class ThinSectionsPolicy(CheckPolicy):
    #: A section is thin when it is shorter than this share of what its max_tokens allows...
    min_share: float = Field(0.2, ge=0.0, le=1.0)
    #: ...and shorter than this many words (characters in Chinese and Japanese).
    min_words: int = Field(40, ge=0, le=100_000)


class RelevancePolicy(CheckPolicy):
    #: Content words (Chinese: character pairs) a title, or a section's heading and body, must share with the topic.
    min_shared_terms: int = Field(1, ge=1, le=20)
    #: A section sharing none with the topic is off-topic when less than this share of its terms is found
    #: anywhere else in the article.
    min_article_overlap: float = Field(0.05, ge=0.0, le=1.0)


class RepairPolicy(_Model):
    #: How often a section failing a section-level check is written again (0: never).
    max_attempts: int = Field(1, ge=0, le=5)


class QCSpec(_Model):
    grammar: GrammarPolicy = Field(default_factory=GrammarPolicy)
    moderation: ModerationPolicy = Field(default_factory=ModerationPolicy)
    min_words: int = Field(300, ge=0)
    max_words: int | None = Field(None, ge=1)
    max_repetition: float = Field(0.25, ge=0.0, le=1.0)
    require_outline_coverage: bool = True
    # Editorial checks, section by section (copydesk.qc.editorial).
    prompt_echo: PromptEchoPolicy = Field(default_factory=PromptEchoPolicy)
    meta_talk: MetaTalkPolicy = Field(default_factory=MetaTalkPolicy)
    refusal: CheckPolicy = Field(default_factory=CheckPolicy)
    placeholders: CheckPolicy = Field(default_factory=CheckPolicy)
    markdown: MarkdownPolicy = Field(default_factory=MarkdownPolicy)
    language: LanguagePolicy = Field(default_factory=LanguagePolicy)
    duplication: DuplicationPolicy = Field(default_factory=DuplicationPolicy)
    originality: OriginalityPolicy = Field(default_factory=OriginalityPolicy)
    links: LinksPolicy = Field(default_factory=LinksPolicy)
    thin_sections: ThinSectionsPolicy = Field(default_factory=ThinSectionsPolicy)
    relevance: RelevancePolicy = Field(default_factory=RelevancePolicy)
    #: A section cut off by max_tokens: review (keep it, hold the article) or trim (cut it back to its
    #: last complete sentence, recorded).
    truncation: Literal["review", "trim"] = "review"
    repair: RepairPolicy = Field(default_factory=RepairPolicy)


class ExportSpec(_Model):
    markdown: bool = True
    csv: bool = True
    #: Excel needs a byte-order mark to read a UTF-8 CSV with Chinese text correctly.
    csv_bom: bool = True


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: The five cron fields in order: label, lowest and highest value, names allowed as values.
_CRON_FIELDS: tuple[tuple[str, int, int, frozenset[str]], ...] = (
    ("minute", 0, 59, frozenset()),
    ("hour", 0, 23, frozenset()),
    ("day", 1, 31, frozenset()),
    ("month", 1, 12, frozenset(_MONTHS)),
    ("weekday", 0, 7, frozenset(_WEEKDAYS)),  # 0 and 7 are both Sunday
)
_CRON_PART = re.compile(r"(?:\*|(?P<start>[0-9]+|[A-Za-z]+)(?:-(?P<end>[0-9]+|[A-Za-z]+))?)(?:/(?P<step>[0-9]+))?")


def _cron_field_ok(field: str, lo: int, hi: int, names: frozenset[str]) -> bool:
    """One cron field: comma-separated parts, each `*`, `a` or `a-b`, with an optional `/step`.

    Values (numbers or names such as `mon`, `jan`) must lie within lo-hi and a step
    must be positive. This is the plain subset of what Prefect's croniter accepts
    (a range like `fri-mon` wraps around there, so it is allowed here too)."""

    def value_ok(token: str | None) -> bool:
        if token is None:
            return True
        if token.isdigit():
            return lo <= int(token) <= hi
        return token.lower() in names

    for part in field.split(","):
        match = _CRON_PART.fullmatch(part)
        if not match:
            return False
        step = match["step"]
        if step is not None and int(step) == 0:
            return False
        if not (value_ok(match["start"]) and value_ok(match["end"])):
            return False
    return True


class ScheduleSpec(_Model):
    cron: str = Field(description="Five-field cron expression.")
    timezone: str = "UTC"
    topics: list[str] = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, value: str) -> str:
        """Checked here, field by field, so that a bad schedule fails `copydesk validate`
        rather than the deployment later (and without importing Prefect)."""
        fields = value.split()
        if len(fields) != 5:
            raise ValueError("cron needs five fields: minute hour day month weekday")
        for field, (label, lo, hi, names) in zip(fields, _CRON_FIELDS):
            if not _cron_field_ok(field, lo, hi, names):
                raise ValueError(f"cron {label} field {field!r} is not valid (allowed {lo}-{hi})")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class ModelPrice(_Model):
    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")


class PipelineSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    description: str = ""
    language: str = Field("en-US", pattern=r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
    model: str = Field(min_length=1, description="Pinned default model of every stage.")
    fallback_model: str | None = Field(
        None, description="Used when the pinned model is unavailable or keeps failing."
    )
    prompts_dir: Path = Path("../prompts")
    system_prompt: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    stages: Stages
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    concurrency: int = Field(8, ge=1, le=1024)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    qc: QCSpec = Field(default_factory=QCSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    schedule: ScheduleSpec | None = None
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)

    #: Where the spec was read from; set by `load_spec`, not by the YAML.
    source: Path | None = Field(None, exclude=True)

    @field_validator("vars")
    @classmethod
    def _no_reserved_vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_VARS & set(value))
        if clash:
            raise ValueError(f"{', '.join(clash)} is set by the pipeline itself and cannot be a var")
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
        if bad:
            raise ValueError(f"var names must be identifiers: {', '.join(map(str, bad))}")
        return value

    def model_for(self, stage: str) -> str:
        return getattr(self.stages, stage).model or self.model

    @property
    def resolved_prompts_dir(self) -> Path:
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.prompts_dir).resolve()


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path) -> PipelineSpec:
    """Read, parse and validate one pipeline spec."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such pipeline spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc}") from exc
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> PipelineSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a pipeline spec must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, path, _line_index(text))) from None
    return spec.model_copy(update={"source": path.resolve()})


def _describe(exc: ValidationError, path: Path, lines: dict[tuple[str, ...], int]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        # Errors inside a union or a model validator carry technical suffixes; drop them.
        loc = tuple(p for p in loc if not p.startswith(("function-", "list[", "str", "int")))
        field = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (not part of the pipeline spec)"
        elif error["type"] == "missing":
            message = "required but missing"
        elif "input" in error and error["type"] not in ("model_type", "dict_type"):
            message = f"{message} (got {error['input']!r})"
        line = _nearest_line(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {field}: {message}")
    return "invalid pipeline spec\n  " + "\n  ".join(problems)


def _nearest_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each mapping key's dotted path to its 1-based line in the YAML."""
    index: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value))
                index[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = (*prefix, str(i))
                index[path] = item.start_mark.line + 1
                walk(item, path)

    if root is not None:
        walk(root, ())
    return index
