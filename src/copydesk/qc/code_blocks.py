"""Code blocks that do not parse in the language their fence declares.

    ```python                       ast.parse: a SyntaxError (an unterminated string, a bracket
    def f(x):                       that does not match) fails the check
        return [x for x in y)
    ```

Declared languages and how they are read: `python`/`py`/`python3` through `ast` (a block of
`>>>` prompts, an interactive session, is read without its prompts and output), `json` through
`json`, `yaml`/`yml` through PyYAML (`safe_load_all`), `toml` through `tomllib`; `sh`/`bash`/
`shell`/`zsh` conservatively: only an unclosed quote (`shlex`) counts, and a block with a here-document
or a `$` prompt is not read. A fence without a language, or with another one, is not checked.

A block that does not parse is a soft failure in its section's body: the runner writes the
section again (`copydesk.qc.repair`, `qc.repair.max_attempts`) like any failing section check,
and holds the article if it still fails.

    qc:
      code_blocks:
        enabled: true
        shell: true          # also read shell blocks (conservatively)
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
import warnings
from collections.abc import Callable, Sequence

import yaml

from copydesk.prose import document
from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place

_PROMPT = re.compile(r"^(?:>>>|\.\.\.)(?: |$)")
_SHELL_PROMPT = re.compile(r"^\s*\$ ")


class CodeBlocksPolicy(CheckPolicy):
    #: Also read sh/bash/shell/zsh blocks (only an unclosed quote fails them).
    shell: bool = True


def _python(code: str) -> str | None:
    lines = code.split("\n")
    if any(_PROMPT.match(line) for line in lines):  # an interactive session: only the prompted lines
        code = "\n".join(_PROMPT.sub("", line) for line in lines if _PROMPT.match(line))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for an invalid escape is not an error
            ast.parse(code)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    except ValueError as exc:  # null bytes
        return str(exc)
    return None


def _json(code: str) -> str | None:
    try:
        json.loads(code)
    except ValueError as exc:
        return str(exc)
    return None


def _yaml(code: str) -> str | None:
    try:
        for _ in yaml.safe_load_all(code):
            pass
    except yaml.YAMLError as exc:
        return " ".join(str(exc).split())[:200]
    return None


def _toml(code: str) -> str | None:
    try:
        tomllib.loads(code)
    except tomllib.TOMLDecodeError as exc:
        return str(exc)
    return None


def _shell(code: str) -> str | None:
    if "<<" in code or any(_SHELL_PROMPT.match(line) for line in code.split("\n")):
        return None  # here-documents and sessions with output: not read
    try:
        shlex.split(code, comments=True, posix=True)
    except ValueError as exc:
        return str(exc)
    return None


PARSERS: dict[str, Callable[[str], str | None]] = {
    "python": _python, "py": _python, "python3": _python,
    "json": _json,
    "yaml": _yaml, "yml": _yaml,
    "toml": _toml,
}
SHELL = {"sh": _shell, "bash": _shell, "shell": _shell, "zsh": _shell}


def code_blocks(body: str) -> list[tuple[str, str]]:
    """(declared language, code) of each fenced block of `body` (language lower-cased, "" if none), from
    its one parse (copydesk.prose: a Draft's section is parsed once for every check)."""
    return [(token.info.strip().split(maxsplit=1)[0].lower() if token.info.strip() else "", token.content)
            for token in document(body).tokens if token.type == "fence"]


def broken_code(sections: Sequence[tuple[str, str]], shell: bool = True) -> list[dict]:
    """One finding per fenced block that does not parse in its declared language."""
    parsers = {**PARSERS, **(SHELL if shell else {})}
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        for language, code in code_blocks(body):
            parse = parsers.get(language)
            if parse is None or not code.strip():
                continue
            error = parse(code)
            if error:
                found.append(finding(i, heading, code, where="body", language=language, error=error))
    return found


class CodeBlocksCheck(BaseCheck, key="code_blocks", policy=CodeBlocksPolicy):
    def run(self, draft: Draft) -> CheckResult:
        return CheckResult.from_findings(
            self.name, broken_code(draft.sections, self.policy.shell), "every declared code block parses",
            lambda first: f"{place(first)} has {first['language']} code that does not parse: {first['error']}")
