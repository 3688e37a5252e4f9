"""Pipeline specs: YAML → a bounded safe loader → pydantic models with `extra="forbid"`.

`load_spec(path)` is the only entry point. Every problem becomes one `SpecError`
whose message names the file, the field (as a dotted path) and, where the YAML
can tell, the line. Values quoted in messages are shortened (`short`), never the
whole input.

A spec is trusted to describe a pipeline, not to read or exhaust the machine:

- the file is at most `MAX_SPEC_BYTES`; YAML aliases are bounded (`MAX_YAML_ALIASES`
  uses, `MAX_YAML_NODES` nodes once expanded, `MAX_YAML_DEPTH` levels), so an alias
  bomb is refused at once; a key written twice in one mapping is an error naming both lines;
- `prompts_dir` must resolve, after symlinks, inside the spec's project: the folder
  that holds the spec's folder (`P/pipelines/x.yaml` → `P`), and be a folder of it, not
  the project itself, a dot-folder (`.git`, `.copydesk`) or the output folder;
- template names (stage prompts, `system_prompt`) are `*.j2`, `*.jinja` or `*.md` files
  relative to `prompts_dir`, outside any dot-folder (`template_name_problem`; the
  template loader applies the same rule to real paths and to what templates include);
- template variables (`vars`, `schedule.vars`, and every run's overrides through
  `validate_vars`) are identifiers that the template context does not reserve, with
  JSON-like values, bounded in number and size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from copydesk.cron import cron_problem
from copydesk.errors import SpecError
from copydesk.qc.registry import QCSpec
from copydesk.specvars import (  # noqa: F401 - the vars' rules and bounds, re-exported as the spec's limits
    MAX_VAR_DEPTH,
    MAX_VAR_INT,
    MAX_VAR_NAME_CHARS,
    MAX_VARS,
    MAX_VARS_CHARS,
    RESERVED_VARS,
    VarSpec,
    check_values,
    read_declarations,
    parse_text,
    validate_vars,
    vars_problems,
    vars_validator,
)
from copydesk.specyaml import (  # noqa: F401 - the YAML bounds are part of the spec's documented limits
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    nearest_line,
    read_yaml,
    short,
)

NAME_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
STAGE_NAMES = ("title", "outline", "expansion")
#: An extra stage's name (`stages.extras`): a lower-case identifier, also its CSV column and front-matter key.
EXTRA_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: At most this many extra stages per pipeline.
MAX_EXTRAS = 8
#: Names an extra may not take: the stages', and the CSV columns and front-matter keys copydesk writes
#: itself (tests/test_extras.py checks that every one of those is here).
RESERVED_EXTRA_NAMES = frozenset(STAGE_NAMES) | frozenset({
    "run_id", "topic", "title", "slug", "status", "reasons", "word_count", "sections", "prompt_tokens",
    "completion_tokens", "total_tokens", "grammar_issues", "moderation_flagged", "model", "path",
    "est_cost_usd", "fallback_from", "cached_calls", "cached_prompt_tokens", "language", "tokens", "created",
    "pipeline", "extras", "date", "lastmod", "draft", "copydesk",
})
#: What a template may be: stage prompts, `system_prompt`, and whatever they include.
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".md")
#: The project's own output folder (`copydesk init`'s layout); never a prompts folder.
PROJECT_OUTPUT_FOLDER = "outputs"

#: Largest spec file read, in bytes.
MAX_SPEC_BYTES = 256 * 1024

def template_name_problem(name: str) -> str | None:
    """Why `name` cannot name a template, judged from the name alone (None when it can).

    The template loader (`copydesk.sandbox.ConfinedLoader`) applies the same rules to the
    real path, after symlinks, and to every `include`/`import`/`extends`."""
    parts = name.split("/")
    if not name or "\\" in name or "\0" in name or os.path.isabs(name) or ".." in parts:
        return "is outside prompts_dir: template names are paths relative to that folder, without '..'"
    if any(part.startswith(".") for part in parts):
        return "lies in a dot-folder or is a dot-file (.git, .copydesk, ...); templates may not"
    if not name.endswith(TEMPLATE_SUFFIXES):
        return f"is not a template file: templates are {_SUFFIX_LIST} text files"
    return None


_SUFFIX_LIST = ", ".join("*" + suffix for suffix in TEMPLATE_SUFFIXES)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {short(value)}") from exc
    return value


#: An IANA time zone name (schedules, shared allowances' periods).
TimeZoneName = Annotated[str, AfterValidator(_known_timezone)]


class StageSpec(_Model):
    """One generation stage. Only the sampling values written in the spec are sent,
    plus `max_tokens`, which is always sent because the budget relies on it."""

    prompt: str = Field(description="Template file name, resolved in prompts_dir.")
    model: str | None = Field(None, description="Overrides the pipeline's model for this stage.")
    batch_model: str | None = Field(
        None, min_length=1,
        description="Batch mode: the model name written into this stage's batch lines (a gateway's upstream "
        "name); unset: batch.model, else the stage's model.")
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
            raise ValueError(f"must be a number, not {type(value).__name__} {short(value)}")
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
    #: Ask for the outline as JSON constrained by a schema (`response_format`): auto tries OpenAI's
    #: json_schema, then llama.cpp's json_object with a schema, then plain text, moving on for the rest
    #: of the run when the server refuses one (HTTP 400/422); or name one form; off: plain text only.
    structured: Literal["auto", "json_schema", "json_object", "off"] = "auto"

    @model_validator(mode="after")
    def _bounds(self) -> OutlineStage:
        if self.min_sections > self.max_sections:
            raise ValueError(
                f"min_sections ({self.min_sections}) is larger than max_sections ({self.max_sections})"
            )
        return self


class ExpansionStage(StageSpec):
    max_tokens: int = Field(600, ge=1, le=200_000)


class ExtraStage(StageSpec):
    """A per-article extra stage (`stages.extras.NAME`): asked once per article after the expansion,
    with the title, the outline and the article's text in its context. Its answer, cleaned and made
    inert, becomes `Article.extras[NAME]`: a front-matter key and a CSV column of that name."""

    max_tokens: int = Field(60, ge=1, le=200_000)
    output: Literal["text", "list"] = Field(
        "text", description="text: one line (a description); list: a list of short items (tags), asked as JSON "
        "where the server allows it, else read from comma- or line-separated text.")
    required: bool = Field(
        True, description="true: an empty or refused answer holds the article for review (needs_review) with "
        "the reason; false: the article goes on without it (the key is left out, the CSV cell empty).")
    max_chars: int | None = Field(
        None, ge=1, le=2000,
        description="The longest text (output: text; default 300) or list item (output: list; default 40) "
        "kept, cut on a word boundary.")
    max_items: int = Field(8, ge=1, le=50, description="output: list: at most this many items are kept.")
    structured: Literal["auto", "json_schema", "json_object", "off"] = Field(
        "auto", description="output: list: how the list is asked for as JSON (as `stages.outline.structured`).")

    @property
    def char_limit(self) -> int:
        return self.max_chars or (300 if self.output == "text" else 40)


def _extra_names(value: dict[str, ExtraStage]) -> dict[str, ExtraStage]:
    for name in value:
        if not re.fullmatch(EXTRA_NAME_PATTERN, name):
            raise ValueError(f"extra {short(name)}: names are lower-case identifiers (a-z, 0-9, _), "
                             "at most 32 characters, starting with a letter")
        if name in RESERVED_EXTRA_NAMES:
            raise ValueError(f"extra {short(name)}: the name is taken by a stage, a CSV column or a front-matter "
                             "key copydesk writes itself")
    return value


class Stages(_Model):
    title: TitleStage
    outline: OutlineStage
    expansion: ExpansionStage
    extras: Annotated[dict[str, ExtraStage], AfterValidator(_extra_names)] = Field(
        default_factory=dict, max_length=MAX_EXTRAS,
        description="Per-article extra stages (description, tags, ...), asked in this order after the "
        "expansion; see docs/spec.md, \"Extra stages\".")

    def items(self) -> list[tuple[str, StageSpec]]:
        """Every stage, the three in order, then the extras in the order the spec declares them."""
        return [(name, getattr(self, name)) for name in STAGE_NAMES] + list(self.extras.items())

    def get(self, name: str) -> StageSpec:
        """The stage or extra stage called `name` (KeyError when there is none)."""
        if name in STAGE_NAMES:
            return getattr(self, name)  # type: ignore[no-any-return]
        return self.extras[name]


class SharedBudgetSpec(_Model):
    """Names a shared allowance: one for every run (of any pipeline) that names it, held by the
    Prefect server. It belongs to the operator, who records its limit, period and timezone
    (`copydesk budget create/set`); a spec that repeats them must agree with the record (a run
    exits 2 otherwise). None of them changes the allowance."""

    name: str = Field(pattern=NAME_PATTERN, max_length=64, description="Runs naming the same allowance share it.")
    max_tokens: int | None = Field(None, ge=1, le=2_000_000_000,
                                   description="Optional: must agree with the recorded allowance's limit.")
    period: Literal["day", "week", "month", "total"] | None = Field(
        None, description="Optional: must agree with the recorded allowance's period.")
    timezone: TimeZoneName | None = Field(None, description="Optional: must agree with the recorded allowance's "
                                                            "timezone.")


class BudgetSpec(_Model):
    max_total_tokens: int = Field(60_000, ge=1, description="Hard cap on usage.total_tokens for one run.")
    warn_at: float = Field(0.8, gt=0.0, le=1.0, description="Share of the budget that triggers one warning.")
    shared: SharedBudgetSpec | None = Field(None, description="Optional allowance shared across runs and machines.")


class RateLimits(_Model):
    rpm: int | None = Field(None, ge=1, description="Requests per minute, at most.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (reserved upper bounds), at most.")


class BatchSpec(_Model):
    """Batch mode's own settings."""

    model: str | None = Field(
        None, min_length=1,
        description="The model name written into batch lines, for every stage without its own batch_model; "
        "unset: each stage's model. Behind a gateway that rewrites model names for realtime calls but "
        "passes batch files through (LiteLLM), this is the upstream's name.")


#: What a site's section folder may be: one or more plain folder names.
SECTION_PATTERN = r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$"


class ExportSpec(_Model):
    markdown: bool = True
    csv: bool = True
    #: Excel needs a byte-order mark to read a UTF-8 CSV with Chinese text correctly.
    csv_bom: bool = True
    target: Literal["plain", "hugo", "jekyll", "mkdocs"] = Field(
        "plain",
        description="The site generator the articles are written for: plain (copydesk's own front matter), "
        "hugo, jekyll or mkdocs (see Publishing to a site).")
    dir: Path | None = Field(
        None,
        description="The site's folder (a checkout): published articles (and drafts, where the target has them) "
        "are written into it in the target's layout. Relative: to the spec's folder. Unset: a target other than "
        "plain writes its layout into the run folder's site/.")
    section: str | None = Field(
        None, pattern=SECTION_PATTERN, max_length=200,
        description="hugo: the section under content/ (unset: posts); mkdocs: a folder under docs/ (unset: "
        "docs/ itself). Folder names of letters, digits, - and _, joined by /.")
    drafts: bool = Field(
        True,
        description="Write held articles (needs_review, rejected, incomplete) as drafts where the target has "
        "drafts (hugo: draft: true; jekyll: _drafts/); false: they stay in the run folder only.")
    overwrite: bool = Field(
        False,
        description="Replace a file in export.dir that copydesk did not write (or that was edited since); "
        "false: a foreign file is never touched and the article gets a free name.")

    @model_validator(mode="after")
    def _target_needs_markdown(self) -> ExportSpec:
        if self.target != "plain" and not self.markdown:
            raise ValueError(f"target {self.target} writes Markdown files: it needs markdown: true")
        return self


class ScheduleSpec(_Model):
    cron: str = Field(description="Five-field cron expression.")
    timezone: TimeZoneName = "UTC"
    topics: list[str] = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, value: str) -> str:
        """Checked here, field by field, so that a bad schedule fails `copydesk validate`
        rather than the deployment later (and without importing Prefect)."""
        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("vars")
    @classmethod
    def _valid_vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        return vars_validator(value)


class ModelPrice(_Model):
    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")
    cached_input: float | None = Field(None, ge=0, description="USD per million prompt tokens served from the "
                                       "prompt cache; unset: input.")
    batch_input: float | None = Field(None, ge=0, description="Batch API: USD per million prompt tokens; unset: half of input.")
    batch_output: float | None = Field(None, ge=0, description="Batch API: USD per million completion tokens; unset: half of output.")


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
    # The template variables, declared (copydesk.specvars); the property `vars` gives their values.
    var_specs: dict[str, VarSpec] = Field(default_factory=dict, alias="vars")
    stages: Stages
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    concurrency: int = Field(8, ge=1, le=1024)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    qc: QCSpec = Field(default_factory=QCSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    schedule: ScheduleSpec | None = None
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    mode: Literal["realtime", "batch", "auto"] = Field(
        "realtime",
        description="realtime calls; batch: the OpenAI Batch API (about half the price, within 24 h); "
        "auto: batch where the server has a Batch API, realtime elsewhere.",
    )

    batch: BatchSpec = Field(default_factory=BatchSpec)

    #: Where the spec was read from; set by `load_spec`, not by the YAML.
    source: Path | None = Field(None, exclude=True)

    @field_validator("var_specs", mode="before")
    @classmethod
    def _declared_vars(cls, value: Any) -> Any:
        return read_declarations(value)

    @model_validator(mode="after")
    def _schedule_vars_declared(self) -> PipelineSpec:
        if self.schedule is not None and self.schedule.vars:
            problems = check_values(self.var_specs, self.schedule.vars, origin="schedule.vars")
            if problems:
                raise ValueError("schedule.vars: " + "; ".join(problems))
        return self

    @property
    def vars(self) -> dict[str, Any]:
        """The template variables' values (their defaults): what templates see unless a run overrides them."""
        return {name: var.default for name, var in self.var_specs.items()}

    def var_from_text(self, name: str, text: str) -> Any:
        """The value of `--var NAME=TEXT`, read as the type the spec declares for NAME (`specvars.parse_text`)."""
        return parse_text(self.var_specs.get(name), text)

    def check_vars(self, values: Any, *, origin: str) -> dict[str, Any]:
        """A run's overrides, checked: the rules of every var (`validate_vars`), then the declarations
        (unknown names refused naming the known ones; values of their declared type). SpecError (exit 2)."""
        checked = validate_vars(values, origin=origin)
        problems = check_values(self.var_specs, checked, origin=origin)
        if problems:
            raise SpecError(f"{origin}: " + "; ".join(problems))
        return checked

    def model_for(self, stage: str) -> str:
        return self.stages.get(stage).model or self.model

    def batch_model_for(self, stage: str) -> str:
        """The model name a batch line of `stage` carries: its batch_model, batch.model, or its model."""
        return self.stages.get(stage).batch_model or self.batch.model or self.model_for(stage)

    @property
    def project_dir(self) -> Path:
        """The folder that holds the spec's folder (`P/pipelines/x.yaml` → `P`); without a
        source file, the parent of the working directory."""
        base = self.source.parent if self.source else Path.cwd().resolve()
        return base.parent

    @property
    def resolved_prompts_dir(self) -> Path:
        base = self.source.parent if self.source else Path.cwd()
        return Path(os.path.realpath(base / self.prompts_dir))

    def template_fields(self) -> list[tuple[tuple[str, ...], str]]:
        """Each spec field that names a template, as (dotted location, template name)."""
        fields = [(("stages", stage, "prompt") if stage in STAGE_NAMES else ("stages", "extras", stage, "prompt"),
                   spec.prompt) for stage, spec in self.stages.items()]
        if self.system_prompt is not None:
            fields.append((("system_prompt",), self.system_prompt))
        return fields

    def prompts_dir_problem(self, reserved: tuple[Path, ...] = ()) -> str | None:
        """Why `prompts_dir` may not be used, or None when it resolves to a folder of the
        project that is not the project itself, a dot-folder, the project's `outputs/`, nor in
        one of the `reserved` folders (real paths: the output and state folders).

        The answer depends only on where the path leads, never on whether anything
        exists there, and quotes no value."""
        problem = self._outside_problem()
        if problem:
            return problem
        resolved = self.resolved_prompts_dir
        inside = resolved.relative_to(self.project_dir).parts
        if not inside:
            return (
                f"may not be the project folder {self.project_dir} itself (it holds .git, .copydesk "
                "and outputs): name the folder that holds the prompts, e.g. ../prompts"
            )
        if any(part.startswith(".") for part in inside):
            return "may not be or lie in a dot-folder (.git, .copydesk, ...)"
        if inside[0] == PROJECT_OUTPUT_FOLDER or any(resolved.is_relative_to(folder) for folder in reserved):
            return "may not be or lie in copydesk's output or state folder"
        return None

    def _outside_problem(self) -> str | None:
        project = self.project_dir
        if project == Path(project.anchor):
            return (
                "the spec must sit in a folder of its project (P/pipelines/x.yaml), "
                "so that prompts_dir has a project to stay inside"
            )
        try:
            resolved = self.resolved_prompts_dir
        except (OSError, RuntimeError, ValueError):
            resolved = None
        if resolved is None or not resolved.is_relative_to(project):
            return (
                f"must resolve inside the pipeline's project {project} (the folder that holds the "
                "spec's folder); no absolute path, '..' or symlink may lead out of it"
            )
        return None

    def checked_prompts_dir(self, reserved: tuple[Path, ...] = ()) -> Path:
        """`resolved_prompts_dir`, or a SpecError when it may not be used (`prompts_dir_problem`)."""
        problem = self.prompts_dir_problem(reserved)
        if problem:
            raise SpecError(f"{self.source or self.name}: prompts_dir: {problem}")
        return self.resolved_prompts_dir


def load_spec(path: str | Path) -> PipelineSpec:
    """Read, parse and validate one pipeline spec (at most MAX_SPEC_BYTES)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such pipeline spec") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or type(exc).__name__}") from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES // 1024} KiB; a pipeline spec is a short YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> PipelineSpec:
    """Parse and validate spec text read from `path` (which anchors `prompts_dir`)."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES // 1024} KiB; a pipeline spec is a short YAML file")
    data, lines = read_yaml(text, path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a pipeline spec must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, path, lines)) from None
    spec = spec.model_copy(update={"source": path.resolve()})
    if spec.export.dir is not None and not spec.export.dir.is_absolute():  # relative to the spec's folder
        export = spec.export.model_copy(update={"dir": spec.source.parent / spec.export.dir})
        spec = spec.model_copy(update={"export": export})
    problem = spec.prompts_dir_problem()
    if problem:
        line = lines.get(("prompts_dir",))
        where = f"{path}:{line}" if line else str(path)
        raise SpecError(f"{where}: prompts_dir: {problem}")
    for loc, name in spec.template_fields():
        problem = template_name_problem(name)
        if problem:
            line = nearest_line(lines, loc)
            where = f"{path}:{line}" if line else str(path)
            raise SpecError(f"{where}: {'.'.join(loc)}: template {short(name)} {problem}")
    return spec


def _describe(exc: ValidationError, path: Path, lines: dict[tuple[str, ...], int]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        # Errors inside a union or a model validator carry technical suffixes; drop them.
        loc = tuple(p for p in loc if not p.startswith(("function-", "list[", "str", "int")))
        field = ".".join(p if len(p) <= 60 else short(p) for p in loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (not part of the pipeline spec)"
        elif error["type"] == "missing":
            message = "required but missing"
        elif "input" in error and error["type"] not in ("model_type", "dict_type"):
            message = f"{message} (got {short(error['input'])})"
        line = nearest_line(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {field}: {message}")
    return "invalid pipeline spec\n  " + "\n  ".join(problems)
