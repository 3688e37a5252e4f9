"""Sizes, measured with `ast` over copydesk's src/ and flows/: no module over 600 lines, no function
(or method) over 80, from its `def` line to its last line. Nothing is allowed above the limits; a part
that grows past one is split (ARCHITECTURE.md names the module of each part)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def python_files(root: Path) -> list[Path]:
    return sorted([*(root / "src" / "copydesk").rglob("*.py"), *(root / "flows").rglob("*.py")])


def function_lengths(source: str) -> dict[str, int]:
    """Lines of each function and method (`Class.method`, `outer.inner`), nested ones counted on their own too."""
    found: dict[str, int] = {}

    def walk(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = [*scope, child.name]
                if not isinstance(child, ast.ClassDef):
                    found[".".join(name)] = child.end_lineno - child.lineno + 1
                walk(child, name)
            else:
                walk(child, scope)

    walk(ast.parse(source), [])
    return found


def oversized(root: Path) -> list[str]:
    problems = []
    for path in python_files(root):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(root)
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            problems.append(f"{where}: {lines} lines (at most {MAX_MODULE_LINES})")
        for function, length in function_lengths(source).items():
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{where}:{function}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return problems


def test_no_module_or_function_over_its_limit():
    assert python_files(ROOT), "no source files found"
    assert oversized(ROOT) == []


def test_the_measure_sees_a_long_method_a_nested_function_and_a_long_module(tmp_path):
    module = tmp_path / "src" / "copydesk" / "big.py"
    module.parent.mkdir(parents=True)
    (tmp_path / "flows").mkdir()
    body = "\n".join(f"        x{k} = {k}" for k in range(81))
    nested = "\n".join(f"        y{k} = {k}" for k in range(80))
    module.write_text(f"class A:\n    def long(self):\n{body}\n\ndef outer():\n    def inner():\n{nested}\n    return inner\n"
                      + "\n" * 500, encoding="utf-8")
    assert function_lengths(module.read_text(encoding="utf-8")) == {"A.long": 82, "outer": 83, "outer.inner": 81}
    assert oversized(tmp_path) == [
        "src/copydesk/big.py: 667 lines (at most 600)",
        "src/copydesk/big.py:A.long: 82 lines (at most 80)",
        "src/copydesk/big.py:outer: 83 lines (at most 80)",
        "src/copydesk/big.py:outer.inner: 81 lines (at most 80)",
    ]
