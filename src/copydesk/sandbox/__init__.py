"""The template sandbox: Jinja's `SandboxedEnvironment`, confined to one folder and bounded.

A template may compute, but not read the machine or exhaust it:

- `ConfinedLoader` loads a template only when its real path (after symlinks) lies
  inside the prompts folder; absolute names and `..` are refused. `{% include %}`,
  `{% import %}` and `{% extends %}` go through the same loader. Whether a file
  outside exists is never revealed: every name that leads out gets the same error.
  Inside, only template files load: `*.j2`/`*.jinja`/`*.md` (the caller's `suffixes`),
  UTF-8 text, in no dot-folder and none of the `reserved` folders (output and state).
- `BoundedSandbox.render_template` stops a render past `MAX_RENDER_CHARS` of output,
  `MAX_RENDER_SECONDS`, or `MAX_RENDER_WORK` characters and items built in all (every
  value is counted as it is built, so many values kept in namespaces cannot add up);
  each `for` step, each call and each intercepted operator checks the deadline, so
  nested empty loops and runaway recursion stop too.
- No value a template holds is larger than `MAX_RENDER_CHARS` once expanded (text,
  items and digits, a list shared n times counted n times; `limits.weight`), so that
  what Python does in one uninterruptible step (print, compare, hash, join a value)
  stays small: every list, tuple and dict literal is weighed when it is built, and so
  is every value that a call, a filter or an operator returns; a template cannot change
  a list, mapping or set in place (it builds a new one), and a `namespace()` prints as
  `<namespace>`, so nothing can grow inside a value after it was weighed.
- Operators, methods and filters that could build a huge value in one step are
  checked before they run (`limits`): `*`, `**`, `+` and `%` (strings, lists, big
  integers), `~`, `range` (at most `MAX_RANGE` items), `center`, `indent`, `format`,
  `join`, `replace`, `wordwrap`, `batch`, `slice`, `sum`, `urlize`, `lipsum`, the
  str/bytes methods `center`, `ljust`, `rjust`, `zfill`, `expandtabs`, `replace`,
  `join`, `translate`, `format` (widths, and fields times the largest argument);
  `tojson` is counted as it is encoded; the operands of `~` and what `{{ }}` prints are
  turned into text one by one and counted before they are joined; the items of lazy
  filter results (`map`, `select`...) are counted as they come.

Every limit raises `RenderLimitError` (a Jinja `SecurityError`); `copydesk.prompts`
turns it, and any other rendering exception, into a `TemplateError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateNotFound
from jinja2.loaders import BaseLoader
from jinja2.sandbox import SandboxedEnvironment

from copydesk.sandbox.limits import (
    MAX_INT_BITS,
    MAX_RANGE,
    MAX_RENDER_CHARS,
    MAX_RENDER_SECONDS,
    MAX_RENDER_WORK,
    MAX_TEMPLATE_BYTES,
    BoundedNamespace,
    RenderBudget,
    RenderLimitError,
    as_text,
    bounded_concat,
    bounded_dumps,
    bounded_lipsum,
    bounded_range,
    bounded_str_join,
    check_binop,
    check_deadline,
    guard_str_method,
    guarded_filter,
    mutates,
    current_render,
    sized,
    steps,
)


class TemplateOutsideError(TemplateNotFound):
    """A template name that leads out of the prompts folder (absolute, `..`, or a symlink)."""


class TemplateRefusedError(TemplateNotFound):
    """A path inside the prompts folder that may not be a template; `reason` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name)
        self.reason = reason


# ----------------------------------------------------------------------------- loading


class ConfinedLoader(BaseLoader):
    """Loads `name` from `root` only if its real path lies inside `root`, and both the name
    and the real path end with one of `suffixes`, pass through no dot-folder (and name no
    dot-file) below `root`, and lie in none of the `reserved` folders (real paths)."""

    def __init__(self, root: Path, suffixes: tuple[str, ...] = (".j2",), reserved: tuple[Path, ...] = ()) -> None:
        self.root = Path(os.path.realpath(root))
        self.suffixes = suffixes
        self.reserved = tuple(Path(os.path.realpath(folder)) for folder in reserved)

    def locate(self, name: str) -> Path:
        """The real path of template `name`; TemplateOutsideError, TemplateRefusedError or
        TemplateNotFound otherwise.

        Whether a name leads out or is refused is decided from the path alone, before
        asking whether the file exists."""
        parts = name.split("/")
        if (
            not name
            or "\\" in name
            or "\0" in name
            or os.path.isabs(name)
            or ".." in parts
            or len(name) > 1024
        ):
            raise TemplateOutsideError(name)
        real = Path(os.path.realpath(self.root.joinpath(*parts)))
        if not real.is_relative_to(self.root) or real == self.root:
            raise TemplateOutsideError(name)
        self._refuse(name, parts, real)
        if not real.is_file():
            raise TemplateNotFound(name)
        return real

    def _refuse(self, name: str, parts: list[str], real: Path) -> None:
        """TemplateRefusedError when the name or the real path is no template's."""
        if any(part.startswith(".") for part in (*parts, *real.relative_to(self.root).parts)):
            raise TemplateRefusedError(name, "lies in a dot-folder or is a dot-file (.git, .copydesk, ...); templates may not")
        if not (name.endswith(self.suffixes) and real.name.endswith(self.suffixes)):
            listed = ", ".join("*" + suffix for suffix in self.suffixes)
            raise TemplateRefusedError(name, f"is not a template file: templates are {listed} text files")
        if any(real.is_relative_to(folder) for folder in self.reserved):
            raise TemplateRefusedError(name, "lies in copydesk's output or state folder; templates may not")

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        real = self.locate(template)
        try:
            with real.open("rb") as handle:
                data = handle.read(MAX_TEMPLATE_BYTES + 1)
            mtime = real.stat().st_mtime
        except OSError:
            raise TemplateNotFound(template) from None
        if len(data) > MAX_TEMPLATE_BYTES:
            raise RenderLimitError(f"template {template[:60]!r} is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
        source = data.decode("utf-8")  # a UnicodeDecodeError is the caller's to report
        if "\0" in source:
            raise TemplateRefusedError(template, "is not a text file (it holds NUL bytes)")

        def uptodate() -> bool:
            try:
                return real.stat().st_mtime == mtime
            except OSError:
                return False

        return source, str(self.root / template), uptodate


# ----------------------------------------------------------------------------- the environment


class _BoundedCodeGenerator(CodeGenerator):
    """Weighs every `~` concatenation and every list, tuple and dict literal as it is built."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:  # Markup joins: checked after
            self.write("environment.sized_text(")
            super().visit_Concat(node, frame)
            self.write(")")
            return
        self.write("environment.str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.sized_literal(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.sized_literal(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target: `{% for a, b in ... %}`
            super().visit_Tuple(node, frame)
            return
        self.write("environment.sized_literal(")
        super().visit_Tuple(node, frame)
        self.write(")")


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, confined to `prompts_dir` and bounded in size and time (see the module)."""

    code_generator_class = _BoundedCodeGenerator
    concat = staticmethod(bounded_concat)  # type: ignore[assignment]
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(
        self, prompts_dir: Path, *, suffixes: tuple[str, ...] = (".j2",), reserved: tuple[Path, ...] = (), **options: Any
    ) -> None:
        super().__init__(loader=ConfinedLoader(prompts_dir, suffixes, reserved), finalize=as_text, **options)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        self.globals["namespace"] = BoundedNamespace
        self.policies["json.dumps_function"] = bounded_dumps
        self.filters = {name: guarded_filter(name, func) for name, func in self.filters.items()}
        self.filters["copydesk_steps"] = steps

    # -- parsing: every for loop steps through `steps` ----------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "copydesk_steps", [], [], None, None, lineno=loop.iter.lineno)
        return tree

    # -- hooks the sandbox calls --------------------------------------------------

    @staticmethod
    def sized_text(text: Any) -> Any:
        return sized(text)

    @staticmethod
    def str_join(values: Any) -> str:
        return bounded_str_join(values)

    @staticmethod
    def sized_literal(value: Any) -> Any:
        return sized(value, "a list, tuple or mapping")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not mutates(obj, attr) and super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        if mutates(obj, attribute):
            return self.undefined(
                f"a template may not change a {type(obj).__name__} in place ({attribute!r}): "
                "build a new one, e.g. {% set ns.items = ns.items + [item] %}",
                name=attribute, obj=obj, exc=SecurityError,
            )
        return super().unsafe_undefined(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_deadline()
        check_binop(operator, left, right)
        return sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        check_deadline()
        args = guard_str_method(__obj, args, kwargs)
        return sized(super().call(__context, __obj, *args, **kwargs))

    # -- rendering ------------------------------------------------------------------

    def render_template(self, template: Any, context: dict[str, Any]) -> str:
        """Render `template` with `context`, streaming; RenderLimitError past
        MAX_RENDER_CHARS of output, MAX_RENDER_SECONDS or MAX_RENDER_WORK built in all."""
        token = current_render.set(RenderBudget())
        try:
            parts: list[str] = []
            size = 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_RENDER_CHARS:
                    raise RenderLimitError(f"the rendered prompt is longer than {MAX_RENDER_CHARS:,} characters")
                if chunk:  # empty ones would pile up uncounted in a long loop
                    parts.append(chunk)
                check_deadline()
            return "".join(parts)
        finally:
            current_render.reset(token)


__all__ = [
    "MAX_INT_BITS",
    "MAX_RANGE",
    "MAX_RENDER_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_WORK",
    "MAX_TEMPLATE_BYTES",
    "BoundedSandbox",
    "ConfinedLoader",
    "RenderLimitError",
    "TemplateOutsideError",
    "TemplateRefusedError",
    "check_deadline",
]
