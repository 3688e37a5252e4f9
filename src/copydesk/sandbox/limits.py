"""The sandbox's limits: sizes of values, the render deadline, and the checks that run
before an operation that could build a huge value in one step (see `copydesk.sandbox`)."""


from __future__ import annotations

import functools
import inspect
import json
import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping, MutableSequence, MutableSet
from contextvars import ContextVar
from itertools import islice
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Cycler, Namespace, generate_lorem_ipsum, pass_context

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
#: All that one render may build, in characters, items and digits (each value counted as
#: it is built, whether kept or not): bounds the memory a render holds at once.
MAX_RENDER_WORK = 32 * MAX_RENDER_CHARS


class RenderBudget:
    """One render's deadline and how much it has built so far."""

    __slots__ = ("deadline", "spent")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.spent = 0


current_render: ContextVar[RenderBudget | None] = ContextVar("copydesk_render", default=None)


class RenderLimitError(SecurityError):
    """A template went past one of the sandbox's limits."""


# ----------------------------------------------------------------------------- checks


def check_deadline() -> None:
    """Raise RenderLimitError when the current render has run out of time."""
    render = current_render.get()
    if render is not None and time.monotonic() > render.deadline:
        raise RenderLimitError(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


def too_long(what: str, size: int) -> RenderLimitError:
    return RenderLimitError(f"{what} would be {size:,} long; templates may build at most {MAX_RENDER_CHARS:,}")


TEXT = (str, bytes, bytearray)
CONTAINERS = (list, tuple, set, frozenset, dict)
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


class BoundedNamespace(Namespace):
    """Jinja's `namespace()` whose text form does not show its attributes: a namespace is
    the one object a template can change after putting it into a list, so its contents
    must not count towards what printing or comparing a list costs."""

    def __repr__(self) -> str:
        return "<namespace>"


def weight(value: Any, limit: int = MAX_RENDER_CHARS) -> int:
    """Characters of text plus items of containers in `value`, counted through nested
    containers (a shared one once per use: its size once expanded, which is what printing,
    comparing or hashing it costs); stops counting past `limit`, so the cost is at most
    `limit` steps whatever the structure. Dict views count as their dict, a `cycler` as its
    items; a namespace counts 1 (`BoundedNamespace`)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, TEXT):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1  # about its decimal digits
        elif isinstance(item, CONTAINERS):
            total += len(item)
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif len(item) <= limit:
                stack.extend(item)
            else:
                total += limit
        elif isinstance(item, _VIEWS):
            stack.append(list(islice(item, limit + 1)))
        elif isinstance(item, Cycler):
            stack.append(item.items)
        else:
            total += 1
    return total


_WEIGHED = (*TEXT, *CONTAINERS, *_VIEWS, Cycler)


def sized(value: Any, what: str = "a value") -> Any:
    """`value`, unless its text and items (`weight`) exceed MAX_RENDER_CHARS; its size is
    charged to the render (`charge`)."""
    if isinstance(value, _WEIGHED):
        size = weight(value)
        if size > MAX_RENDER_CHARS:
            raise too_long(what, size)
        charge(size)
    return value


def as_text(value: Any, what: str = "a printed value") -> str:
    """`str(value)`: a list, tuple or mapping is weighed before it is turned into text, and
    new text is charged to the render (a string is used as it is: no new text)."""
    if isinstance(value, str):
        text = value
    else:
        if isinstance(value, _WEIGHED):
            size = weight(value)
            if size > MAX_RENDER_CHARS:
                raise too_long(what, size)
        text = str(value)
        charge(len(text))
    if len(text) > MAX_RENDER_CHARS:
        raise too_long(what, len(text))
    return text


def bounded_str_join(values: Iterable[Any]) -> str:
    """What `a ~ b ~ c` compiles to: each operand turned into text (`as_text`) and the total
    refused before the join, so that many operands cannot add up in one step."""
    texts = []
    total = 0
    for value in values:
        text = as_text(value, "a ~ operand")
        total += len(text)
        if total > MAX_RENDER_CHARS:
            raise too_long("a ~ concatenation", total)
        texts.append(text)
    charge(total)
    return "".join(texts)


def charge(size: int) -> None:
    """Count `size` towards what the current render has built; RenderLimitError past
    MAX_RENDER_WORK (values kept by a namespace, a macro or a generator would otherwise
    add up without one of them being large)."""
    render = current_render.get()
    if render is not None:
        render.spent += size
        if render.spent > MAX_RENDER_WORK:
            raise RenderLimitError(
                f"the template built more than {MAX_RENDER_WORK:,} characters and items in all "
                f"(each value counted as it is built)"
            )


def bounded_concat(parts: Iterable[str]) -> str:
    """`"".join`, refused before joining past MAX_RENDER_CHARS (macro bodies, `{% set %}`
    and `{% filter %}` blocks join their output through this)."""
    parts = parts if isinstance(parts, list) else list(parts)
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_RENDER_CHARS:
            raise too_long("a block's output", total)
    charge(total)
    return "".join(parts)


def _count(value: Any, what: str, limit: int = MAX_RENDER_CHARS) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        raise RenderLimitError(f"{what} {value:,} is too large (at most {limit:,})" if value.bit_length() < 64
                               else f"{what} is too large (at most {limit:,})")


def int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_fields(fmt: str, fields: int, args: Iterable[Any]) -> None:
    """A format string with `fields` fields can repeat its largest argument that often."""
    if fields:
        largest = max((_text_size(arg) for arg in args), default=0)
        size = len(fmt) + fields * largest
        if size > MAX_RENDER_CHARS:
            raise too_long("the formatted string", size)


def _text_size(value: Any) -> int:
    """About how long `str(value)` is: its weight (+24 for a number's digits) for text,
    numbers and containers, the text itself for anything else (an imported template's body)."""
    if isinstance(value, (*_WEIGHED, int, float)):
        return weight(value) + 24
    return len(str(value))


def check_printf(fmt: str, args: Iterable[Any]) -> None:
    """Widths and precisions of a %-format (`*` ones come from the arguments), and its
    fields times its largest argument."""
    star = False
    args = list(args)
    fields = 0
    for match in _PRINTF.finditer(fmt.replace("%%", "")):
        fields += 1
        for group in match.groups():
            if group == "*":
                star = True
            elif group is not None and (len(group) > 7 or int(group) > MAX_RENDER_CHARS):
                raise RenderLimitError(f"a format width of {group[:12]} is too large (at most {MAX_RENDER_CHARS:,})")
    if star:
        for arg in args:
            _count(arg, "a format width")
    _check_fields(fmt, fields, args)


def _check_format_method(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Widths in a `str.format` string (nested `{}` widths come from the arguments)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error
    _check_fields(fmt, sum(1 for field in fields if field[1] is not None), (*args, *kwargs.values()))
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
        if isinstance(item, TEXT):
            total += len(item)
        else:
            total += weight(item) if isinstance(item, _WEIGHED) and weight(item) > MAX_RENDER_CHARS else len(str(item))
        if total > MAX_RENDER_CHARS:
            break
    return total


def guard_str_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size checks for the str methods that can grow a string; returns the (maybe listed) args."""
    target = inspect.unwrap(obj)
    s = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if name == "to_bytes" and isinstance(s, int):
        _count(args[0] if args else kwargs.get("length", 1), "a to_bytes length")
    if not isinstance(s, TEXT):
        return args
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _count(args[0], f"a width for {name}")
    elif name == "expandtabs":
        tab = "\t" if isinstance(s, str) else b"\t"
        size = len(s) + s.count(tab) * (args[0] if args and isinstance(args[0], int) else 8)  # type: ignore[arg-type]
        if size > MAX_RENDER_CHARS:
            raise too_long("the expanded string", size)
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, TEXT) for a in args[:2]):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else kwargs.get("count")
        size = _replace_size(s, args[0], args[1], count)
        if size > MAX_RENDER_CHARS:
            raise too_long("the replaced string", size)
    elif name == "join" and args:
        items = _materialize(args[0])
        size = _join_size(items, s)
        if size > MAX_RENDER_CHARS:
            raise too_long("the joined string", size)
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(s) * longest > MAX_RENDER_CHARS:
            raise too_long("the translated string", len(s) * longest)
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
            raise too_long("the indented text", size)
    elif name == "format" and isinstance(value, str):
        check_printf(value, (*args, *kwargs.values()))
    elif name == "join":
        value = _materialize(value)
        sep = args[0] if args else kwargs.get("d", "")
        if not (args[1:] or "attribute" in kwargs):
            size = _join_size(value, str(sep))
            if size > MAX_RENDER_CHARS:
                raise too_long("the joined string", size)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count")
        size = _replace_size(str(value), str(args[0]), str(args[1]), count if isinstance(count, int) else None)
        if size > MAX_RENDER_CHARS:
            raise too_long("the replaced string", size)
    elif name == "wordwrap":
        width = args[0] if args else kwargs.get("width", 79)
        wrapstring = args[2] if len(args) > 2 else kwargs.get("wrapstring") or "\n"
        if isinstance(width, int) and width >= 1:
            text = str(value)
            size = len(text) + (len(text) // width + 1) * len(str(wrapstring))
            if size > MAX_RENDER_CHARS:
                raise too_long("the wrapped text", size)
    elif name == "tojson":
        _count(args[0] if args else kwargs.get("indent"), "a tojson indent", 64)
    elif name in ("batch", "slice"):
        _count(args[0] if args else kwargs.get("linecount", kwargs.get("slices")), f"the {name} size", MAX_RANGE)
    elif name == "sum":
        value = _materialize(value)
        _check_sum(value, args[1] if len(args) > 1 else kwargs.get("start", 0))
    elif name == "urlize":
        target, rel = (args[3:5] + (None, None))[:2] if len(args) > 3 else (kwargs.get("target"), kwargs.get("rel"))
        text = str(value)
        size = 3 * len(text) + (len(text.split()) + 1) * (len(str(target or "")) + len(str(rel or "")) + 40)
        if size > MAX_RENDER_CHARS:
            raise too_long("the linked text", size)
    return value


def _check_sum(items: list[Any], start: Any) -> None:
    """`sum` of sequences copies the growing result once per item: refused when that would
    copy more than 16 x MAX_RENDER_CHARS items (numbers are summed whatever their count)."""
    numbers = (int, float)
    if isinstance(start, numbers) and all(isinstance(item, numbers) for item in items):
        return
    cost = len(items) * (weight(items) + weight(start))
    if cost > 16 * MAX_RENDER_CHARS:
        raise RenderLimitError(f"summing {len(items):,} sequences would copy about {cost:,} items "
                               f"(at most {16 * MAX_RENDER_CHARS:,})")


def bounded_dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` for `|tojson`, encoded piece by piece and stopped past MAX_RENDER_CHARS
    (an indent repeats per nesting level, so the size is counted, not estimated)."""
    parts: list[str] = []
    size = 0
    for index, chunk in enumerate(json.JSONEncoder(**kwargs).iterencode(obj)):
        size += len(chunk)
        if size > MAX_RENDER_CHARS:
            raise too_long("the JSON text", size)
        parts.append(chunk)
        if not index % 4096:
            check_deadline()
    return "".join(parts)


_MUTATORS = (
    (MutableSequence, frozenset({"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"})),
    (MutableMapping, frozenset({"clear", "pop", "popitem", "setdefault", "update"})),
    (MutableSet, frozenset({"add", "clear", "discard", "pop", "remove", "update", "difference_update",
                            "intersection_update", "symmetric_difference_update"})),
)


def mutates(obj: Any, attribute: Any) -> bool:
    """Whether `obj.attribute` is a method that changes a list, mapping or set in place."""
    return any(isinstance(obj, kind) and attribute in names for kind, names in _MUTATORS)


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Checks before `*`, `**`, `+` and `%` run (sizes of strings and sequences, bits of integers)."""
    if operator == "**":
        if int_bits(left) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if math.log2(abs(left)) * min(right, MAX_INT_BITS + 1) > MAX_INT_BITS:
                raise RenderLimitError(f"a power would exceed {MAX_INT_BITS} bits")
    elif operator == "*":
        if int_bits(left) + int_bits(right) > MAX_INT_BITS:
            raise RenderLimitError(f"a product would exceed {MAX_INT_BITS} bits")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, TEXT + CONTAINERS) and isinstance(times, int) and times > 0:
                size = weight(seq) * min(times, MAX_RENDER_CHARS + 1)
                if size > MAX_RENDER_CHARS:
                    raise too_long("a repeated value", size if times <= MAX_RENDER_CHARS else weight(seq) * times)
    elif operator == "+":
        if isinstance(left, TEXT + CONTAINERS) and isinstance(right, TEXT + CONTAINERS):
            size = weight(left) + weight(right)
            if size > MAX_RENDER_CHARS:
                raise too_long("a sum", size)
    elif operator == "%" and isinstance(left, TEXT):
        fmt = left if isinstance(left, str) else bytes(left).decode("latin-1")
        check_printf(fmt, right if isinstance(right, (tuple, list)) else (right,))


def guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
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
        return sized(result)

    return guarded


def _bounded_stream(items: Iterator[Any]) -> Iterator[Any]:
    """The items of a lazy filter result (`map`, `select`, `batch`...), stopped once they
    add up past MAX_RENDER_CHARS, so `|list` or `|join` cannot collect more."""
    total = 0
    for item in items:
        check_deadline()
        size = weight(item)
        total += size
        if total > MAX_RENDER_CHARS:
            raise too_long("a filter's items", total)
        charge(size)
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
def steps(context: Any, iterable: Any) -> Iterator[Any]:
    """Wraps the iterable of every `for` loop: checks the deadline before each step."""
    for item in iterable:
        check_deadline()
        yield item


