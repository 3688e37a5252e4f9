"""The import rules of ARCHITECTURE.md, enforced: import-linter checks the contracts in
.importlinter against the real source (copydesk, and flows/ as copydesk_flows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _lint(pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "NO_COLOR": "1", "COLUMNS": "200"}
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache", str(ROOT / ".importlinter")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_hold(tmp_path):
    result = _lint(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_prefect_import_in_the_library_breaks_the_contract(tmp_path):
    """The contracts bite: the same source with one `import prefect` in the core fails."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "copydesk", src / "copydesk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "flows", src / "copydesk_flows", ignore=shutil.ignore_patterns("__pycache__"))
    spec = src / "copydesk" / "spec.py"
    spec.write_text(spec.read_text(encoding="utf-8") + "\n\ndef _late() -> None:\n    import prefect  # noqa\n",
                    encoding="utf-8")
    writer = src / "copydesk" / "writer.py"
    writer.write_text(writer.read_text(encoding="utf-8") + "\nfrom copydesk import runner  # noqa\n", encoding="utf-8")
    editor = src / "copydesk_flows" / "editor.py"
    editor.write_text(editor.read_text(encoding="utf-8") + "\nfrom flows.pipeline import execute  # noqa\n",
                      encoding="utf-8")
    result = _lint(src, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 kept, 3 broken" in result.stdout
    assert "copydesk_flows.editor -> flows" in result.stdout
    assert "copydesk.spec -> prefect" in result.stdout
    assert "copydesk.writer -> copydesk.runner" in result.stdout


def test_the_command_line_and_the_library_load_without_prefect():
    """The seam is lazy: the CLI and the whole run machinery import without Prefect,
    which only `run` and `serve` load (through copydesk.launch)."""
    code = (
        "import sys, copydesk.cli, copydesk.orchestration, copydesk.resources, copydesk.plan, copydesk.review; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'copydesk_flows', 'flows')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _layer_names(contract: str) -> set[str]:
    """The module names a layers contract of .importlinter places (one per `a : b | c` item)."""
    import configparser
    import re

    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter", encoding="utf-8")
    layers = parser[f"importlinter:contract:{contract}"]["layers"]
    return {name for name in re.split(r"[\s:|()]+", layers) if name}


def test_every_module_has_a_layer():
    """A module missing from the layers contract would escape the downward-only rule: a new
    module must be placed in a layer when it is added."""
    library = {p.stem if p.suffix == ".py" else p.name
               for p in (ROOT / "src" / "copydesk").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    flows = {p.stem for p in (ROOT / "flows").glob("*.py") if p.stem != "__init__"}
    assert library - _layer_names("library-layers") == set()
    assert flows - _layer_names("flows-layers") == set()


def test_every_module_is_in_the_module_map():
    """ARCHITECTURE.md is the newcomer's map: every module has its line there."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    names = [".".join(("copydesk", *p.relative_to(ROOT / "src" / "copydesk").with_suffix("").parts))
             for p in (ROOT / "src" / "copydesk").rglob("*.py") if p.stem != "__init__"]
    names += [f"copydesk_flows.{p.stem}" for p in (ROOT / "flows").glob("*.py") if p.stem != "__init__"]
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == []
