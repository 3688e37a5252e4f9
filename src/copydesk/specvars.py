"""Typed template variables: what a spec's `vars` declare, and the one check of every override.

A spec's `vars` entry is either a plain value (today's form: `audience: developers`),
or a declaration, a mapping with a `type:` key:

    tone: {type: choice, choices: [practical, playful, formal], default: practical,
           description: How the articles sound}

Types: `string` (one line), `text` (several lines), `number`, `integer`, `bool`,
`choice` (one of `choices`), and `json` (any JSON-like value: lists, objects, null). A
plain value declares its type by itself: a string is a `string` (a `text` when it holds a
line break), an integer an `integer`, a float a `number`, true/false a `bool`, anything
else `json`. Templates see only the values (`PipelineSpec.vars`).

Every override of a run (`--var`, the editor form, `schedule.vars`, the flow's
`vars`) goes through `check_values`: names the spec does not declare are refused,
naming the ones it does; values must fit their type (`parse_text` turns the text of a
`--var NAME=VALUE` into that type first).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from copydesk.errors import SpecError
from copydesk.specyaml import short

#: Names the template context reserves: what the pipeline itself puts into every context,
#: and Jinja's own globals and loop names. No var (spec, schedule or run override) may use them.
RESERVED_VARS = frozenset(
    {"topic", "language", "title", "outline", "section", "section_index", "section_count", "article", "vars"}
    | {"range", "lipsum", "dict", "cycler", "joiner", "namespace", "loop", "self", "caller",
       "varargs", "kwargs", "true", "false", "none", "True", "False", "None"}
)

#: Template variables: at most this many names, each at most `MAX_VAR_NAME_CHARS` long,
#: values JSON-like (str, int, float, bool, null, lists, objects with string keys) nested at
#: most `MAX_VAR_DEPTH` deep, all values together at most `MAX_VARS_CHARS` as JSON.
MAX_VARS = 100
MAX_VAR_NAME_CHARS = 64
MAX_VAR_DEPTH = 8
MAX_VARS_CHARS = 64 * 1024
#: Integers in vars stay within what JSON consumers agree on (signed 64-bit).
MAX_VAR_INT = 2**63 - 1

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

VarType = Literal["string", "text", "number", "integer", "bool", "choice", "json"]
#: Longest description and longest choice, in characters.
MAX_VAR_DESCRIPTION = 500
MAX_CHOICE_CHARS = 200
MAX_CHOICES = 50
#: Longest string/text value, in characters (all vars together are bounded by spec.MAX_VARS_CHARS).
MAX_STRING_CHARS = 2_000
MAX_TEXT_CHARS = 20_000

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
#: What a declaration without a `default:` starts with, by type (number and integer need one).
_IMPLICIT_DEFAULTS: dict[str, Any] = {"string": "", "text": "", "bool": False, "json": None}


class VarSpec(BaseModel):
    """A template variable: its type, what it means to an editor, its choices and its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: VarType
    description: str = Field("", max_length=MAX_VAR_DESCRIPTION,
                             description="What the variable means, in an editor's words (the form shows it).")
    choices: list[str] | None = Field(None, min_length=1, max_length=MAX_CHOICES,
                                      description="The allowed values of a `choice` (and only of a choice).")
    default: Any = Field(None, description="The value templates see unless a run overrides it; unset: the "
                         "first choice, false, an empty string or null (number and integer need one).")

    @model_validator(mode="before")
    @classmethod
    def _implicit_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "default" not in data:
            kind = data.get("type")
            if kind == "choice" and isinstance(data.get("choices"), list) and data["choices"]:
                return {**data, "default": data["choices"][0]}
            if kind in _IMPLICIT_DEFAULTS:
                return {**data, "default": _IMPLICIT_DEFAULTS[kind]}
            if kind in ("number", "integer"):
                raise ValueError(f"a {kind} variable needs a default")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> VarSpec:
        if (self.type == "choice") != (self.choices is not None):
            raise ValueError("choices belong to a choice variable, and a choice variable needs them")
        if self.choices is not None:
            if len(set(self.choices)) != len(self.choices):
                raise ValueError("choices are listed twice")
            if any(not c.strip() or len(c) > MAX_CHOICE_CHARS for c in self.choices):
                raise ValueError(f"each choice is 1 to {MAX_CHOICE_CHARS} characters")
        problem = value_problem(self, self.default)
        if problem:
            raise ValueError(f"default {problem}")
        return self


def declared(value: Any) -> bool:
    """True when a `vars` entry is a declaration (a mapping with a `type:` key), not a plain value."""
    return isinstance(value, Mapping) and "type" in value


def infer(value: Any) -> dict[str, Any]:
    """The declaration a plain value stands for (its type from the value; the value its default)."""
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        kind = "text" if "\n" in value else "string"
    else:
        kind = "json"
    return {"type": kind, "default": value}


def value_problem(spec: VarSpec, value: Any) -> str | None:
    """Why `value` does not fit the variable (None when it does); quotes the value shortened."""
    kind = spec.type
    if kind in ("string", "text", "choice"):
        if not isinstance(value, str):
            return f"must be text, not {_kind_of(value)}"
        limit = MAX_TEXT_CHARS if kind == "text" else MAX_STRING_CHARS
        if len(value) > limit:
            return f"is longer than {limit:,} characters"
        if kind == "string" and "\n" in value:
            return "must be one line (a text variable takes several)"
        if kind == "choice" and value not in (spec.choices or []):
            return f"{short(value)} is not one of {', '.join(spec.choices or [])}"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, not {_kind_of(value)}"
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {_kind_of(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if kind == "integer" and not isinstance(value, int):
            return f"must be a whole number, not {short(value)}"
        return None
    return None  # json: spec.vars_problems bounds it


def _kind_of(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return "empty" if value is None else names.get(type(value), type(value).__name__)


def check_values(declarations: Mapping[str, VarSpec], values: Mapping[str, Any], *, origin: str) -> list[str]:
    """Every problem of overrides `values` against the declarations, each naming the variable
    and `origin` once in front; empty when they fit. Unknown names are refused with the known ones."""
    problems = []
    known = ", ".join(declarations) or "none"
    for name, value in values.items():
        spec = declarations.get(name)
        if spec is None:
            problems.append(f"unknown variable {short(name)} (this pipeline's variables: {known})")
            continue
        problem = value_problem(spec, value)
        if problem:
            problems.append(f"variable {name} {problem}")
    return problems


def parse_text(spec: VarSpec | None, text: str) -> Any:
    """The value of `--var NAME=TEXT` for a variable of this declaration: text as given for
    string, text and choice; a number, true/false or JSON for the others (left as text when it
    does not parse, so that the check names the variable and the problem)."""
    kind = spec.type if spec else "json"
    if kind in ("string", "text", "choice"):
        return text
    if kind == "bool":
        lowered = text.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    if kind in ("number", "integer"):
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            number = float(text.strip())
        except ValueError:
            return text
        return int(number) if kind == "integer" and number.is_integer() else number
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _var_value_problem(value: Any, depth: int) -> str | None:
    if depth > MAX_VAR_DEPTH:
        return f"nested deeper than {MAX_VAR_DEPTH} levels"
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if -MAX_VAR_INT <= value <= MAX_VAR_INT else "integer out of range (at most 2**63-1)"
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = _var_value_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return "object keys must be strings"
            problem = _var_value_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"a {type(value).__name__} is not a JSON-like value (str, number, bool, null, list, object)"


def _json_size(value: Any) -> int:
    """Characters `value` takes as compact JSON (strings counted by length; no string is built)."""
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, (int, float)):
        return 24
    if isinstance(value, (list, tuple)):
        return 2 + sum(_json_size(item) + 1 for item in value)
    if isinstance(value, Mapping):
        return 2 + sum(len(str(k)) + 4 + _json_size(v) for k, v in value.items())
    return 0


def vars_problems(values: Any) -> list[str]:
    """Every problem of a vars mapping, each naming the var; empty when it is valid.

    The one rule for the spec's `vars`, `schedule.vars` and every run's overrides
    (`--var`, the editor form, scheduled runs): see the module docstring and the
    `MAX_VAR*` constants."""
    if not isinstance(values, Mapping):
        return [f"must be a mapping of names to values, not {type(values).__name__}"]
    problems: list[str] = []
    if len(values) > MAX_VARS:
        return [f"{len(values)} vars; at most {MAX_VARS} are allowed"]
    for name, value in values.items():
        label = short(name)
        if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
            problems.append(f"var {label}: names must be identifiers (letters, digits, _)")
            continue
        if len(name) > MAX_VAR_NAME_CHARS:
            problems.append(f"var {label}: names are at most {MAX_VAR_NAME_CHARS} characters")
            continue
        if name in RESERVED_VARS:
            problems.append(f"var {label}: the name is reserved by the template context")
            continue
        problem = _var_value_problem(value, 1)
        if problem:
            problems.append(f"var {label}: {problem}")
    if not problems:
        size = sum(_json_size(v) for v in values.values())
        if size > MAX_VARS_CHARS:
            problems.append(f"the vars take {size:,} characters as JSON; at most {MAX_VARS_CHARS:,} are allowed")
    return problems


def validate_vars(values: Any, *, origin: str) -> dict[str, Any]:
    """Check template variables from `origin` (e.g. `--var`, `vars override`); a SpecError otherwise."""
    problems = vars_problems(values)
    if problems:
        raise SpecError(f"{origin}: " + "; ".join(problems))
    return dict(values)


def vars_validator(value: dict[str, Any]) -> dict[str, Any]:
    problems = vars_problems(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


def read_declarations(value: Any) -> Any:
    """A spec's `vars` as declarations (`copydesk.specvars`): plain values become declarations of
    their own type; names and the JSON-like bounds of the defaults are checked as before."""
    if not isinstance(value, Mapping):
        return value  # pydantic says it is not a mapping
    vars_validator({name: item.get("default") if declared(item) else item for name, item in value.items()})
    return {name: item if declared(item) else infer(item) for name, item in value.items()}
