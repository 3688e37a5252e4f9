"""JSON from outside, bounded: every document an API server or a run file gives copydesk is
read through `loads`, which refuses nesting deeper than `MAX_DEPTH` (and, when asked, a text
longer than `max_bytes`) with a `JsonLimitError` instead of a RecursionError deep inside the
decoder or in whatever walks the result later.

`JsonLimitError` is a `ValueError`, as the decoder's own errors are, so every caller that
treats "not JSON" as a bad answer or a damaged file treats "too deep" the same way; its
message says what was wrong and on which line.

The depth check costs nothing for ordinary documents (fewer brackets than `MAX_DEPTH`); only
a document with many brackets is scanned, once, strings skipped, in linear time.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting accepted; a chat completion or a batch line is ~6 deep, a run file ~3.
MAX_DEPTH = 64

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_TOKENS_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = {"[", "{", b"[", b"{", ord("["), ord("{")}


class JsonLimitError(ValueError):
    """A JSON document nested deeper, or longer, than copydesk reads."""


def check(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> None:
    """Raise JsonLimitError when `text` is longer than `max_bytes` or nests deeper than `max_depth`."""
    if max_bytes is not None and len(text) > max_bytes:
        raise JsonLimitError(f"the JSON text is {len(text):,} bytes, more than the {max_bytes:,} read at most")
    opening = text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")
    if opening <= max_depth:
        return
    pattern = _TOKENS if isinstance(text, str) else _TOKENS_BYTES
    depth = 0
    for match in pattern.finditer(text):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token in _OPEN:
            depth += 1
            if depth > max_depth:
                newline = "\n" if isinstance(text, str) else b"\n"
                line = text.count(newline, 0, match.start()) + 1  # type: ignore[arg-type]
                raise JsonLimitError(f"JSON nested more than {max_depth} levels deep (line {line})")
        else:
            depth = max(depth - 1, 0)


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """`json.loads(text)` within the limits (see `check`); JsonLimitError or the decoder's ValueError."""
    check(text, max_depth=max_depth, max_bytes=max_bytes)
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen within MAX_DEPTH; kept as a guard for a huge max_depth
        raise JsonLimitError("JSON nested too deep to read") from None
