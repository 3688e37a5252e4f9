"""Prompt templates: Jinja in its sandbox, required variables checked before any call.

As in haystack's PromptBuilder, the variables a template needs are inferred from
the template itself; a missing one is reported with both what is missing and
what was provided, before a single API call is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from copydesk.errors import TemplateError
from copydesk.spec import PipelineSpec

#: Variables each stage's template context holds on top of topic, language and vars.
STAGE_CONTEXT = {
    "title": (),
    "outline": ("title",),
    "expansion": ("title", "outline", "section", "section_index", "section_count"),
}

#: A context that every template must render against in `copydesk validate`.
SAMPLE_CONTEXT: dict[str, Any] = {
    "topic": "Sample topic",
    "title": "A sample title",
    "outline": ["First section", "Second section", "Third section"],
    "section": "Second section",
    "section_index": 2,
    "section_count": 3,
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
        self.directory = spec.resolved_prompts_dir
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.directory), encoding="utf-8"),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self._templates: dict[str, Any] = {}
        self._required: dict[str, frozenset[str]] = {}
        names = [stage.prompt for _, stage in spec.stages.items()]
        if spec.system_prompt:
            names.append(spec.system_prompt)
        for name in names:
            self._load(name)

    # -- loading --------------------------------------------------------------

    def _load(self, name: str) -> None:
        if name in self._templates:
            return
        where = self.directory / name
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
        except TemplateNotFound:
            raise TemplateError(
                f"{self._spec_name()}: template {name!r} not found in prompts_dir {self.directory}"
            ) from None
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{where}: not UTF-8 text ({exc.reason})") from None
        try:
            ast = self._env.parse(source, name=name, filename=str(where))
            self._templates[name] = self._env.get_template(name)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
        self._required[name] = frozenset(meta.find_undeclared_variables(ast))

    def _spec_name(self) -> str:
        return str(self.spec.source) if self.spec.source else self.spec.name

    # -- checking and rendering -------------------------------------------------

    def required(self, name: str) -> frozenset[str]:
        return self._required[name]

    def context(self, topic: str, overrides: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {**self.spec.vars, **(overrides or {}), "topic": topic, "language": self.spec.language, **extra}

    def check(self, overrides: dict[str, Any] | None = None) -> None:
        """Fail before any call when a template needs a variable no stage provides."""
        base = set(self.spec.vars) | set(overrides or {}) | {"topic", "language"}
        for stage_name, stage in self.spec.stages.items():
            provided = base | set(STAGE_CONTEXT[stage_name])
            self._check_one(stage.prompt, provided, f"stages.{stage_name}.prompt")
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
            return self._templates[name].render(context).strip()
        except UndefinedError as exc:
            raise TemplateError(f"{self.directory / name}: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateError(f"{self.directory / name}: unsafe template operation: {exc}") from None

    def prompt(self, stage: str, context: dict[str, Any]) -> PromptSet:
        spec_stage = getattr(self.spec.stages, stage)
        system = self.render(self.spec.system_prompt, context) if self.spec.system_prompt else None
        return PromptSet(system=system, user=self.render(spec_stage.prompt, context))

    def render_samples(self, overrides: dict[str, Any] | None = None) -> dict[str, PromptSet]:
        """Render every stage against SAMPLE_CONTEXT (what `copydesk validate` does)."""
        self.check(overrides)
        base = self.context(SAMPLE_CONTEXT["topic"], overrides)
        rendered = {}
        for stage_name, _ in self.spec.stages.items():
            ctx = dict(base)
            for key in STAGE_CONTEXT[stage_name]:
                ctx[key] = SAMPLE_CONTEXT[key]
            rendered[stage_name] = self.prompt(stage_name, ctx)
        return rendered


def prompts_dir_exists(spec: PipelineSpec) -> Path:
    directory = spec.resolved_prompts_dir
    if not directory.is_dir():
        raise TemplateError(f"{spec.source}: prompts_dir {directory} is not a folder")
    return directory


__all__ = ["PromptLibrary", "PromptSet", "SAMPLE_CONTEXT", "STAGE_CONTEXT", "prompts_dir_exists"]
