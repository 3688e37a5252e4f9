"""In-function imports, counted with `ast` (copydesk's src/ and flows/): only the places listed in
ALLOWED, each with its reason. The command line defers the library and Prefect for its start-up
time (`copydesk validate` does not pay for a run's modules); a few library modules defer a heavy
optional dependency that `copydesk validate` would otherwise import through the spec's `qc:` section.
Any other import belongs at the top of its module."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from conftest import ROOT

#: Why the command line defers an import.
CLI = "command line: a library module only its command needs (the CLI's start-up time)"
PREFECT = "command line: copydesk_flows imports Prefect (~1.5 s), only on first use"
SERVICES = "command line: settings/services (pydantic-settings, httpx) only for the commands that use them"
#: Why a library module defers an import (on `copydesk validate`'s path through copydesk.qc.registry).
HEAVY = "library: a heavy dependency (measured, on validate's path through the qc registry); loaded on first use"

ALLOWED: dict[tuple[str, str], str] = {
    ("copydesk.budget_cli", "_note"): SERVICES,
    ("copydesk.budget_cli", "_server"): SERVICES,
    ("copydesk.budget_cli", "create"): CLI,
    ("copydesk.budget_cli", "set_"): CLI,
    ("copydesk.cli", "_topics"): CLI,
    ("copydesk.cli", "_vars"): CLI,
    ("copydesk.cli", "_prefect_environment"): SERVICES,
    ("copydesk.cli", "_server_for_run"): SERVICES,
    ("copydesk.cli", "_require_shared_server"): CLI,
    ("copydesk.cli", "validate"): CLI,
    ("copydesk.cli", "plan"): CLI,
    ("copydesk.cli", "run"): CLI,
    ("copydesk.cli", "services_start"): SERVICES,
    ("copydesk.cli", "services_stop"): SERVICES,
    ("copydesk.cli", "services_status_cmd"): SERVICES,
    ("copydesk.launch", "run_flow"): "command line: the orchestration and its resources (~100 ms), for `run` only",
    ("copydesk.launch", "build_deployments"): PREFECT,
    ("copydesk.launch", "serve_deployments"): PREFECT,
    ("copydesk.launch", "profile_api_url"): PREFECT,
    ("copydesk.launch", "check_shared_allowance"): PREFECT,
    ("copydesk.launch", "allowance_statuses"): PREFECT,
    ("copydesk.launch", "create_allowance"): PREFECT,
    ("copydesk.launch", "set_allowance"): PREFECT,
    ("copydesk.launch", "reset_allowance"): PREFECT,
    ("copydesk.serve_cli", "_serve_setup"): SERVICES,
    ("copydesk.serve_cli", "_api_answers"): SERVICES,
    ("copydesk.serve_cli", "_start_metrics"): CLI,
    ("copydesk.serve_cli", "review"): CLI,
    ("copydesk.serve_cli", "server_start"): SERVICES,
    ("copydesk.serve_cli", "server_stop"): SERVICES,
    ("copydesk.serve_cli", "server_status"): SERVICES,
    ("copydesk.serve_cli", "server_env"): SERVICES,
    ("copydesk.serve_cli", "server_password"): SERVICES,
    ("copydesk.setup_cli", "setup"): SERVICES,
    ("copydesk.setup_cli", "_java"): SERVICES,
    ("copydesk.setup_cli", "_languagetool"): SERVICES + "; rich.progress and copydesk.provision (httpx)",
    ("copydesk.setup_cli", "_check_server"): SERVICES,
    ("copydesk.qc.grammar", "GrammarChecker.__init__"): HEAVY + " (language_tool_python, ~55 ms)",
    ("copydesk.qc.language", "LanguageDetector.load"): HEAVY + " (py3langid and its model, ~90 ms)",
    ("copydesk.qc.moderation", "_load_local_model"): HEAVY + " (alt-profanity-check, scikit-learn, ~1.2 s)",
    ("copydesk.qc.moderation", "choose_moderator"): HEAVY + " (copydesk.settings: pydantic-settings, ~25 ms)",
    ("copydesk.qc.originality", "ArticleIndex.__init__"): HEAVY + " (datasketch, numpy, ~570 ms)",
    ("copydesk.markup", "parser"): HEAVY + " (markdown-it-py, ~20-50 ms; validate parses no Markdown)",
    ("copydesk.rundir", "_pandas"): "library: pandas (~200 ms) for the CSV alone; rundir is on validate's path",
    ("copydesk.resources", "_warm"): "library: pandas imported on the start-up thread on purpose, as a warm-up",
    ("copydesk_flows.pipeline", "drain_prefect_services"): "flows: a private Prefect API, absent in some versions "
                                                           "(ImportError caught)",
}


def module_name(path: Path, root: Path) -> str:
    """`copydesk.qc.gate` for src/copydesk/qc/gate.py, `copydesk_flows.pipeline` for flows/pipeline.py."""
    rel = path.relative_to(root)
    parts = list(rel.with_suffix("").parts)
    if parts[0] == "src":
        parts = parts[1:]
    elif parts[0] == "flows":
        parts[0] = "copydesk_flows"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def in_function_imports(source: str) -> Counter[str]:
    """How many import statements each function (by qualified name: `Class.method`, `outer.inner`) holds
    in its own body, nested blocks included."""
    found: Counter[str] = Counter()

    def walk(node: ast.AST, scope: list[str], in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(child, [*scope, child.name], True)
            elif isinstance(child, ast.ClassDef):
                walk(child, [*scope, child.name], in_function)
            else:
                if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                    found[".".join(scope)] += 1
                walk(child, scope, in_function)

    walk(ast.parse(source), [], False)
    return found


def tree_imports(root: Path) -> dict[tuple[str, str], int]:
    """(module, function) -> its in-function imports, for every module of src/copydesk and flows/."""
    places: dict[tuple[str, str], int] = {}
    for path in sorted([*(root / "src" / "copydesk").rglob("*.py"), *(root / "flows").rglob("*.py")]):
        for function, count in in_function_imports(path.read_text(encoding="utf-8")).items():
            places[(module_name(path, root), function)] = count
    return places


def test_in_function_imports_only_where_allowed():
    places = tree_imports(ROOT)
    unexpected = sorted(f"{module}:{function} ({count})" for (module, function), count in places.items()
                        if (module, function) not in ALLOWED)
    assert not unexpected, ("imports inside functions outside tests/test_imports.py's ALLOWED "
                            f"(move them to the top of the module, or allow the place with its reason): {unexpected}")
    stale = sorted(f"{module}:{function}" for module, function in ALLOWED if (module, function) not in places)
    assert not stale, f"ALLOWED lists places with no in-function import any more (remove them): {stale}"
    assert sum(places.values()) <= 67, f"{sum(places.values())} in-function imports; 67 at the last count"


def test_the_count_sees_an_import_in_a_method_and_a_nested_function():
    source = (
        "import os\n"
        "class A:\n"
        "    def f(self):\n"
        "        import json\n"
        "        if self:\n"
        "            from pathlib import Path\n"
        "def g():\n"
        "    def inner():\n"
        "        import re\n"
        "    return inner\n"
        "x = 1\n"
    )
    assert in_function_imports(source) == Counter({"A.f": 2, "g.inner": 1})


def test_a_new_import_in_a_library_function_fails(tmp_path):
    """The check bites: a copy of the tree with one import added inside a function of copydesk.spec."""
    for part in ("src/copydesk", "flows"):
        for path in (ROOT / part).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    spec = tmp_path / "src" / "copydesk" / "spec.py"
    spec.write_text(spec.read_text(encoding="utf-8") + "\n\ndef _late() -> None:\n    import json  # noqa\n",
                    encoding="utf-8")
    places = tree_imports(tmp_path)
    assert places[("copydesk.spec", "_late")] == 1
    assert ("copydesk.spec", "_late") not in ALLOWED
    assert {place for place in places if place not in ALLOWED} == {("copydesk.spec", "_late")}
