"""The template sandbox: Jinja's `SandboxedEnvironment`, confined to one folder and bounded.

A template may compute, but not read the machine or exhaust it:

- `ConfinedLoader` loads a template only when its real path (after symlinks) lies
  inside the prompts folder; absolute names and `..` are refused. `{% include %}`,
  `{% import %}` and `{% extends %}` go through the same loader. Whether a file
  outside exists is never revealed: every name that leads out gets the same error.
- `BoundedSandbox.render` stops a render past `MAX_RENDER_CHARS` of output or
  `MAX_RENDER_SECONDS`; each `for` step, each call and each intercepted operator
  checks the deadline, so nested empty loops and runaway recursion stop too.
- Operators, methods and filters that could build a huge value in one step are
  checked before they run (lists and mappings grown by their methods, after): `*`, `**`, `+` and `%` (strings, lists, big integers), `~`,
  `range` (at most `MAX_RANGE` items), `center`, `indent`, `format`, `join`,
  `replace`, `wordwrap`, `batch`, `slice`, `tojson`, `lipsum`, and the str/bytes
  methods `center`, `ljust`, `rjust`, `zfill`, `expandtabs`, `replace`, `join`,
  `translate`, `format`; the items of lazy filter results (`map`, `select`...) are
  counted as they come. Sizes count text, items and digits through nested containers.

Every limit raises `RenderLimitError` (a Jinja `SecurityError`); `copydesk.prompts`
turns it, and any other rendering exception, into a `TemplateError`.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from itertools import islice
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateNotFound
from jinja2.loaders import BaseLoader
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum, pass_context

#: Largest rendered prompt, and largest string or list a template may build, in characters/items.
MAX_RENDER_CHARS = 256 * 1024
#: Longest one render may take, in seconds.
MAX_RENDER_SECONDS = 2.0
#: Most items a `range(...)` in a template may have.
MAX_RANGE = 10_000
#: Largest integer a template may compute, in bits (about 1,200 decimal digits).
MAX_INT_BITS = 4096
#: Largest template file, in bytes.
MAX_TEMPLATE_BYTES = 256 * 1024

_deadline: ContextVar[float | None] = ContextVar("copydesk_render_deadline", default=None)


class RenderLimitError(SecurityError):
    """A template went past one of the sandbox's limits."""


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


# ----------------------------------------------------------------------------- checks


def check_deadline() -> None:
    """Raise RenderLimitError when the current render has run out of time."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimitError(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


def _too_long(what: str, size: int) -> RenderLimitError:
    return RenderLimitError(f"{what} would be {size:,} long; templates may build at most {MAX_RENDER_CHARS:,}")


_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, set, frozenset, dict)


def _weight(value: Any, limit: int = MAX_RENDER_CHARS) -> int:
    """Characters of text plus items of containers in `value`, counted through nested
    containers (a shared one once per use); stops counting past `limit`, so the cost
    is at most `limit` steps whatever the structure."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1  # about its decimal digits
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif len(item) <= limit:
                stack.extend(item)
            else:
                total += limit
    return total


def _sized(value: Any) -> Any:
    """`value`, unless its text and items (`_weight`) exceed MAX_RENDER_CHARS."""
    if isinstance(value, _TEXT + _CONTAINERS):
        weight = _weight(value)
        if weight > MAX_RENDER_CHARS:
            raise _too_long("a value", weight)
    return value


def bounded_concat(parts: Iterable[str]) -> str:
    """`"".join`, refused before joining past MAX_RENDER_CHARS (macro bodies, `{% set %}`
    and `{% filter %}` blocks join their output through this)."""
    parts = parts if isinstance(parts, list) else list(parts)
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_RENDER_CHARS:
            raise _too_long("a block's output", total)
    return "".join(parts)


def _count(value: Any, what: str, limit: int = MAX_RENDER_CHARS) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        raise RenderLimitError(f"{what} {value:,} is too large (at most {limit:,})" if value.bit_length() < 64
                               else f"{what} is too large (at most {limit:,})")


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str, args: Iterable[Any]) -> None:
    """Widths and precisions of a %-format (`*` ones come from the arguments)."""
    star = False
    for match in _PRINTF.finditer(fmt):
        for group in match.groups():
            if group == "*":
                star = True
            elif group is not None and (len(group) > 7 or int(group) > MAX_RENDER_CHARS):
                raise RenderLimitError(f"a format width of {group[:12]} is too large (at most {MAX_RENDER_CHARS:,})")
    if star:
        for arg in args:
            _count(arg, "a format width")


def _check_format_method(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Widths in a `str.format` string (nested `{}` widths come from the arguments)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            for arg in (*args, *kwargs.values()):
                _count(arg, "a format width")
        for digits in re.findall(r"\d+", spec):
            if len(digits) > 7 or int(digits) > MAX_RENDER_CHARS:
                raise RenderLimitError(f"a format width of {digits[:12]} is too large (at most {MAX_RENDER_CHARS:,})")


def _replace_size(s: Any, old: Any, new: Any, count: int | None) -> int:
    occurrences = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(s) + occurrences * (len(new) - len(old))


def _materialize(items: Any) -> list[Any]:
    """At most MAX_RENDER_CHARS + 1 items of an iterable, as a list."""
    if isinstance(items, (list, tuple)):
        return list(items)
    return list(islice(iter(items), MAX_RENDER_CHARS + 1))


def _join_size(items: list[Any], sep: Any) -> int:
    if len(items) > MAX_RENDER_CHARS:
        return len(items)
    total = len(sep) * max(len(items) - 1, 0)
    for item in items:
        total += len(item) if isinstance(item, _TEXT) else len(str(item))
        if total > MAX_RENDER_CHARS:
            break
    return total


def _guard_str_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size checks for the str methods that can grow a string; returns the (maybe listed) args."""
    target = inspect.unwrap(obj)
    s = getattr(target, "__self__", None)
    if not isinstance(s, _TEXT):
        return args
    name = getattr(target, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _count(args[0], f"a width for {name}")
    elif name == "expandtabs":
        tab = "\t" if isinstance(s, str) else b"\t"
        size = len(s) + s.count(tab) * (args[0] if args and isinstance(args[0], int) else 8)  # type: ignore[arg-type]
        if size > MAX_RENDER_CHARS:
            raise _too_long("the expanded string", size)
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, _TEXT) for a in args[:2]):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else kwargs.get("count")
        size = _replace_size(s, args[0], args[1], count)
        if size > MAX_RENDER_CHARS:
            raise _too_long("the replaced string", size)
    elif name == "join" and args:
        items = _materialize(args[0])
        size = _join_size(items, s)
        if size > MAX_RENDER_CHARS:
            raise _too_long("the joined string", size)
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(s) * longest > MAX_RENDER_CHARS:
            raise _too_long("the translated string", len(s) * longest)
    elif name in ("format", "format_map") and isinstance(s, str):
        mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else kwargs
        _check_format_method(s, args if name == "format" else (), dict(mapping))
    return args


# ----------------------------------------------------------------------------- filters and globals


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Pre-checks of the filters that can build a huge value; returns the value to filter."""
    if name == "center":
        _count(args[0] if args else kwargs.get("width", 80), "a width for center")
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        width_chars = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        lines = str(value).count("\n") + 1
        size = len(str(value)) + lines * width_chars
        if size > MAX_RENDER_CHARS:
            raise _too_long("the indented text", size)
    elif name == "format" and isinstance(value, str):
        _check_printf(value, (*args, *kwargs.values()))
    elif name == "join":
        value = _materialize(value)
        sep = args[0] if args else kwargs.get("d", "")
        if not (args[1:] or "attribute" in kwargs):
            size = _join_size(value, str(sep))
            if size > MAX_RENDER_CHARS:
                raise _too_long("the joined string", size)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count")
        size = _replace_size(str(value), str(args[0]), str(args[1]), count if isinstance(count, int) else None)
        if size > MAX_RENDER_CHARS:
            raise _too_long("the replaced string", size)
    elif name == "wordwrap":
        width = args[0] if args else kwargs.get("width", 79)
        wrapstring = args[2] if len(args) > 2 else kwargs.get("wrapstring") or "\n"
        if isinstance(width, int) and width >= 1:
            text = str(value)
            size = len(text) + (len(text) // width + 1) * len(str(wrapstring))
            if size > MAX_RENDER_CHARS:
                raise _too_long("the wrapped text", size)
    elif name == "tojson":
        _count(args[0] if args else kwargs.get("indent"), "a tojson indent", 64)
    elif name in ("batch", "slice"):
        _count(args[0] if args else kwargs.get("linecount", kwargs.get("slices")), f"the {name} size", MAX_RANGE)
    return value


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with the deadline checked before and the result's size after (and the
    pre-checks of `_check_filter`); Jinja's pass_context/pass_environment mark is kept."""
    passes_first = hasattr(func, "jinja_pass_arg")

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_deadline()
        head, rest = (args[:1], args[1:]) if passes_first else ((), args)
        if rest:
            value = _check_filter(name, rest[0], rest[1:], kwargs)
            rest = (value, *rest[1:])
        result = func(*head, *rest, **kwargs)
        if isinstance(result, Iterator):
            return _bounded_stream(result)
        return _sized(result)

    return guarded


def _bounded_stream(items: Iterator[Any]) -> Iterator[Any]:
    """The items of a lazy filter result (`map`, `select`, `batch`...), stopped once they
    add up past MAX_RENDER_CHARS, so `|list` or `|join` cannot collect more."""
    total = 0
    for item in items:
        check_deadline()
        total += _weight(item)
        if total > MAX_RENDER_CHARS:
            raise _too_long("a filter's items", total)
        yield item


def bounded_range(*args: int) -> range:
    """`range`, refused above MAX_RANGE items."""
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise RenderLimitError(f"range() is limited to {MAX_RANGE:,} items in a template")
    return rng


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's `lipsum`, refused when it could exceed MAX_RENDER_CHARS."""
    if not all(isinstance(v, int) for v in (n, min, max)) or n * max * 16 > MAX_RENDER_CHARS:
        raise RenderLimitError("lipsum() asked for too much text")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


@pass_context
def _steps(context: Any, iterable: Any) -> Iterator[Any]:
    """Wraps the iterable of every `for` loop: checks the deadline before each step."""
    for item in iterable:
        check_deadline()
        yield item


# ----------------------------------------------------------------------------- the environment


class _BoundedCodeGenerator(CodeGenerator):
    """Checks the size of every `~` concatenation."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, confined to `prompts_dir` and bounded in size and time (see the module)."""

    code_generator_class = _BoundedCodeGenerator
    concat = staticmethod(bounded_concat)  # type: ignore[assignment]
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(
        self, prompts_dir: Path, *, suffixes: tuple[str, ...] = (".j2",), reserved: tuple[Path, ...] = (), **options: Any
    ) -> None:
        super().__init__(loader=ConfinedLoader(prompts_dir, suffixes, reserved), **options)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum
        self.filters = {name: _guarded_filter(name, func) for name, func in self.filters.items()}
        self.filters["copydesk_steps"] = _steps

    # -- parsing: every for loop steps through `_steps` --------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "copydesk_steps", [], [], None, None, lineno=loop.iter.lineno)
        return tree

    # -- hooks the sandbox calls --------------------------------------------------

    @staticmethod
    def sized_text(text: Any) -> Any:
        return _sized(text)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_deadline()
        if operator == "**":
            if _int_bits(left) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if math.log2(abs(left)) * min(right, MAX_INT_BITS + 1) > MAX_INT_BITS:
                    raise RenderLimitError(f"a power would exceed {MAX_INT_BITS} bits")
        elif operator == "*":
            if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
                raise RenderLimitError(f"a product would exceed {MAX_INT_BITS} bits")
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _TEXT + _CONTAINERS) and isinstance(times, int) and times > 0:
                    size = _weight(seq) * min(times, MAX_RENDER_CHARS + 1)
                    if size > MAX_RENDER_CHARS:
                        raise _too_long("a repeated value", size if times <= MAX_RENDER_CHARS else _weight(seq) * times)
        elif operator == "+":
            if isinstance(left, _TEXT + _CONTAINERS) and isinstance(right, _TEXT + _CONTAINERS):
                size = _weight(left) + _weight(right)
                if size > MAX_RENDER_CHARS:
                    raise _too_long("a sum", size)
        elif operator == "%" and isinstance(left, _TEXT):
            fmt = left if isinstance(left, str) else bytes(left).decode("latin-1")
            _check_printf(fmt, right if isinstance(right, (tuple, list)) else (right,))
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        check_deadline()
        args = _guard_str_method(__obj, args, kwargs)
        result = _sized(super().call(__context, __obj, *args, **kwargs))
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (list, dict, set)):
            weight = _weight(owner)
            if weight > MAX_RENDER_CHARS:
                owner.clear()  # a container grown past the limit by append/extend/update is not kept
                raise _too_long("a list or mapping", weight)
        return result

    # -- rendering ------------------------------------------------------------------

    def render_template(self, template: Any, context: dict[str, Any]) -> str:
        """Render `template` with `context`, streaming; RenderLimitError past
        MAX_RENDER_CHARS of output or MAX_RENDER_SECONDS."""
        token = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
        try:
            parts: list[str] = []
            size = 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_RENDER_CHARS:
                    raise RenderLimitError(f"the rendered prompt is longer than {MAX_RENDER_CHARS:,} characters")
                parts.append(chunk)
                check_deadline()
            return "".join(parts)
        finally:
            _deadline.reset(token)


__all__ = [
    "MAX_INT_BITS",
    "MAX_RANGE",
    "MAX_RENDER_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_TEMPLATE_BYTES",
    "BoundedSandbox",
    "ConfinedLoader",
    "RenderLimitError",
    "TemplateOutsideError",
    "TemplateRefusedError",
    "check_deadline",
]
