"""Characters that may not reach a file: control characters, bidi controls, zero-width ones.

Model output is untrusted: a title with `ESC ] 0 ; … BEL` retitles a terminal that
prints the CSV, U+202E reverses what a reader sees, U+200B makes two slugs or titles
that look alike differ. One definition for every caller:

    clean_text(body)        C0/C1 controls (terminal escape sequences whole) and bidi
                            controls gone; newlines and tabs kept (Markdown bodies)
    clean_line(title)       the same on one line: newlines and tabs become spaces, and
                            zero-width characters (U+200B-U+200D, U+2060, U+FEFF) go too
    clean_value(data)       clean_text on every string inside dicts, lists and tuples

`copydesk.postprocess` cleans model output once; `copydesk.rundir` and the exporter
clean what they write again (the last line of defence for every file).
"""

from __future__ import annotations

import re
from typing import Any

#: Terminal escape sequences, removed whole: CSI (`ESC [ … final`), OSC/DCS/APC/PM/SOS
#: strings (up to BEL or `ESC \`, or the end), and any other two-character escape.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?|[\x1b][\]P^_X][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x9d\x90\x9e\x9f\x98][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[ -~]?"
)
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ZERO_WIDTH = "\u200b-\u200d\u2060\ufeff"
#: C0 controls but tab and newline, DEL, C1 controls, bidi controls.
_CONTROLS = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\t\x0b\x0c\x85\u2028\u2029]")
_INVISIBLE = re.compile(f"[{_ZERO_WIDTH}]")
_ANY = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}{_ZERO_WIDTH}\\u2028\\u2029]")


def clean_text(text: str) -> str:
    """`text` without control or bidi characters; `\\n` and `\\t` kept, `\\r\\n` and `\\r` made `\\n`."""
    if not _ANY.search(text):
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROLS.sub("", _ESCAPE_SEQUENCE.sub("", text))


def clean_line(text: str) -> str:
    """One line: `clean_text`, line breaks and tabs as spaces, zero-width characters gone."""
    if not _ANY.search(text) and "\n" not in text and "\t" not in text:
        return text
    text = _ESCAPE_SEQUENCE.sub("", text)
    return _CONTROLS.sub("", _INVISIBLE.sub("", _LINE_BREAKS.sub(" ", text)))


def clean_value(value: Any) -> Any:
    """`clean_text` applied to every string in `value` (dicts, lists and tuples walked; keys too)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value
