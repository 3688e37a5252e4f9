"""Prompt templates: Jinja in a bounded sandbox, required variables checked before any call.

As in haystack's PromptBuilder, the variables a template needs are inferred from
the template itself; a missing one is reported with both what is missing and
what was provided, before a single API call is made.

Templates load only from inside `prompts_dir` and render within the limits of
`copydesk.sandbox`. Every failure, whether loading, a limit, or any exception while
rendering, becomes a `TemplateError` naming the template file (and the line where
Jinja can tell), with quoted values shortened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, TemplateNotFound, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError

from copydesk.errors import TemplateError
from copydesk.sandbox import BoundedSandbox, RenderLimitError, TemplateOutsideError, TemplateRefusedError
from copydesk.spec import PROJECT_OUTPUT_FOLDER, TEMPLATE_SUFFIXES, PipelineSpec, short

#: Variables each stage's template context holds on top of topic, language and vars.
STAGE_CONTEXT = {
    "title": (),
    "outline": ("title",),
    "expansion": ("title", "outline", "section", "section_index", "section_count"),
}
#: What an extra stage's context holds on top of topic, language and vars: the title, the outline
#: and `article`, the article's sections as Markdown (`## heading`, body), cut to
#: `copydesk.callplan.MAX_ARTICLE_CHARS`.
EXTRA_CONTEXT = ("title", "outline", "article")


def stage_context(stage: str) -> tuple[str, ...]:
    """The earlier answers `stage`'s template context takes (STAGE_CONTEXT, else an extra's)."""
    return STAGE_CONTEXT.get(stage, EXTRA_CONTEXT)


#: A context that every template must render against in `copydesk validate`.
SAMPLE_CONTEXT: dict[str, Any] = {
    "topic": "Sample topic",
    "title": "A sample title",
    "outline": ["First section", "Second section", "Third section"],
    "section": "Second section",
    "section_index": 2,
    "section_count": 3,
    "article": "## First section\n\nSample text.\n\n## Second section\n\nSample text.",
}


@dataclass(frozen=True)
class PromptSet:
    """The rendered messages of one call."""

    system: str | None
    user: str

    def messages(self) -> list[dict[str, str]]:
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.user})
        return messages


class PromptLibrary:
    """The templates of one pipeline, loaded once and rendered many times."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        #: The vars' values (the spec's defaults), what every context starts from.
        self.defaults = spec.vars
        reserved = reserved_folders(spec)
        self.directory = spec.checked_prompts_dir(reserved)
        self._env = BoundedSandbox(
            self.directory,
            suffixes=TEMPLATE_SUFFIXES,
            reserved=reserved,
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self._templates: dict[str, Any] = {}
        self._required: dict[str, frozenset[str]] = {}
        for loc, name in spec.template_fields():
            self._load(name, ".".join(loc))

    # -- loading --------------------------------------------------------------

    def _load(self, name: str, field: str) -> None:
        if name in self._templates:
            return
        where = self.directory / name
        named = f"{self._spec_name()}: {field}: template {short(name)}"
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
            ast = self._env.parse(source, name=name, filename=str(where))
            self._templates[name] = self._env.get_template(name)
        except TemplateOutsideError:
            raise TemplateError(f"{named} {_OUTSIDE}") from None
        except TemplateRefusedError as exc:
            raise TemplateError(f"{named} {exc.reason}") from None
        except TemplateNotFound:
            raise TemplateError(f"{named} not found in prompts_dir {self.directory}") from None
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{where}: not UTF-8 text ({exc.reason})") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}:{exc.lineno}: template syntax error: {_shortened(exc.message)}") from None
        except RenderLimitError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        except RecursionError:
            raise TemplateError(f"{where}: the template nests too deeply to compile") from None
        self._required[name] = frozenset(meta.find_undeclared_variables(ast))

    def _spec_name(self) -> str:
        return str(self.spec.source) if self.spec.source else self.spec.name

    # -- checking and rendering -------------------------------------------------

    def required(self, name: str) -> frozenset[str]:
        return self._required[name]

    def context(self, topic: str, overrides: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {**self.defaults, **(overrides or {}), "topic": topic, "language": self.spec.language, **extra}

    def check(self, overrides: dict[str, Any] | None = None) -> None:
        """Fail before any call when run overrides are invalid (`PipelineSpec.check_vars`: the one
        rule for `--var`, the editor form and scheduled runs), a template needs a variable
        no stage provides, or a template does not render against SAMPLE_CONTEXT within the
        sandbox's limits (what `copydesk validate` checks; `run` and `plan` check it too)."""
        self.render_samples(overrides)

    def _check_variables(self, overrides: dict[str, Any] | None) -> None:
        self.spec.check_vars(overrides or {}, origin="vars override")
        base = set(self.defaults) | set(overrides or {}) | {"topic", "language"}
        for stage_name, stage in self.spec.stages.items():
            provided = base | set(stage_context(stage_name))
            self._check_one(stage.prompt, provided, _field(stage_name))
            if self.spec.system_prompt:
                self._check_one(self.spec.system_prompt, provided, "system_prompt")

    def _check_one(self, name: str, provided: set[str], field: str) -> None:
        missing = self._required[name] - provided
        if missing:
            raise TemplateError(
                f"{self.directory / name} ({field} in {self._spec_name()}): undefined variable(s) "
                f"{', '.join(sorted(missing))}; provided: {', '.join(sorted(provided))}"
            )

    def render(self, name: str, context: dict[str, Any]) -> str:
        missing = self._required[name] - set(context)
        if missing:
            raise TemplateError(
                f"{self.directory / name}: undefined variable(s) {', '.join(sorted(missing))}; "
                f"provided: {', '.join(sorted(context))}"
            )
        try:
            return self._env.render_template(self._templates[name], context).strip()
        except Exception as exc:  # every rendering failure is the template's, reported as one
            raise self._render_error(name, exc) from None

    def _render_error(self, name: str, exc: BaseException) -> TemplateError:
        """A TemplateError naming the template file and line (or the included file's)."""
        where = _template_frame(exc.__traceback__, str(self.directory)) or str(self.directory / name)
        problem = next((describe(exc, self.directory) for kind, describe in _PROBLEMS if isinstance(exc, kind)),
                       f"rendering failed: {type(exc).__name__}: {_shortened(str(exc))}")
        return TemplateError(f"{where}: {problem}")

    def prompt(self, stage: str, context: dict[str, Any]) -> PromptSet:
        spec_stage = self.spec.stages.get(stage)
        system = self.render(self.spec.system_prompt, context) if self.spec.system_prompt else None
        return PromptSet(system=system, user=self.render(spec_stage.prompt, context))

    def render_samples(self, overrides: dict[str, Any] | None = None) -> dict[str, PromptSet]:
        """Render every stage against SAMPLE_CONTEXT (what `copydesk validate` does), after
        the static checks of `check`."""
        self._check_variables(overrides)
        base = self.context(SAMPLE_CONTEXT["topic"], overrides)
        rendered = {}
        for stage_name, stage in self.spec.stages.items():
            ctx = dict(base)
            for key in stage_context(stage_name):
                ctx[key] = SAMPLE_CONTEXT[key]
            system = self._sample(self.spec.system_prompt, ctx, "system_prompt") if self.spec.system_prompt else None
            rendered[stage_name] = PromptSet(system=system, user=self._sample(stage.prompt, ctx, _field(stage_name)))
        return rendered

    def _sample(self, name: str, context: dict[str, Any], field: str) -> str:
        """`render`, its TemplateError saying which spec field led there (the failing file's line
        may be an included template's)."""
        try:
            return self.render(name, context)
        except TemplateError as exc:
            raise TemplateError(f"{exc} (rendering {field} of {self._spec_name()})") from None


def _field(stage: str) -> str:
    """The spec field that names `stage`'s template."""
    return f"stages.{stage}.prompt" if stage in STAGE_CONTEXT else f"stages.extras.{stage}.prompt"


def reserved_folders(spec: PipelineSpec) -> tuple[Path, ...]:
    """Real paths of the folders that never hold templates: the project's `outputs/`, the
    output folder (`COPYDESK_OUTPUT_DIR`, default `outputs` in the working folder) and the
    state folder (`COPYDESK_STATE_DIR`; its default, `.copydesk`, is a dot-folder).

    Read as `copydesk.settings.Settings` reads them (case-insensitive names), without
    importing pydantic-settings, which would add ~20 ms to `copydesk validate`;
    tests/test_prompts.py checks that both agree."""
    env = {name.upper(): value for name, value in os.environ.items() if name.upper().startswith("COPYDESK_")}
    folders = [spec.project_dir / PROJECT_OUTPUT_FOLDER, Path(env.get("COPYDESK_OUTPUT_DIR") or "outputs")]
    if env.get("COPYDESK_STATE_DIR"):
        folders.append(Path(env["COPYDESK_STATE_DIR"]))
    return tuple(Path(os.path.realpath(folder)) for folder in folders)


_OUTSIDE = (
    "is outside prompts_dir: template names are paths relative to that folder, "
    "without '..', and a symlink may not lead out of it"
)


_QUOTED = re.compile(r"'([^']{61,})'|\"([^\"]{61,})\"")


def _shortened(message: str, limit: int = 200) -> str:
    """`message` with every quoted value cut to 60 characters, and at most `limit` long."""
    message = _QUOTED.sub(lambda m: repr((m.group(1) or m.group(2))[:57] + "..."), message)
    return message if len(message) <= limit else message[: limit - 3] + "..."


#: What went wrong in a rendering, by the exception's type (the first that matches), for `_render_error`:
#: each takes the exception and the prompts folder.
_PROBLEMS: tuple[tuple[type[BaseException], Callable[[Any, Path], str]], ...] = (
    (UndefinedError, lambda exc, _: _shortened(exc.message or "undefined variable")),
    (TemplateOutsideError, lambda exc, _: f"included template {short(exc.name)} {_OUTSIDE}"),
    (TemplateRefusedError, lambda exc, _: f"included template {short(exc.name)} {exc.reason}"),
    (TemplateNotFound, lambda exc, folder: f"included template {short(exc.name)} not found in prompts_dir {folder}"),
    (TemplateSyntaxError, lambda exc, _: f"template syntax error in {short(exc.name)}: {_shortened(exc.message)}"),
    (RenderLimitError, lambda exc, _: f"template limit: {exc}"),
    (SecurityError, lambda exc, _: f"unsafe template operation: {_shortened(str(exc))}"),
    (RecursionError, lambda exc, _: "templates call or include each other too deeply"),
    (MemoryError, lambda exc, _: "the template needs too much memory"),
    (UnicodeDecodeError, lambda exc, _: f"an included template is not UTF-8 text ({exc.reason})"),
)


def _template_frame(tb: TracebackType | None, directory: str) -> str | None:
    """`file:line` of the innermost traceback frame in a template under `directory`.

    Jinja rewrites tracebacks so that template code shows its own file and line."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(directory):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


__all__ = ["EXTRA_CONTEXT", "PromptLibrary", "PromptSet", "SAMPLE_CONTEXT", "STAGE_CONTEXT", "stage_context"]
