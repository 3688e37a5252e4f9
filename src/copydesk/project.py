"""Where a copydesk project is, and the folders it reads from its marker.

A project is a folder with a marker: a `copydesk.toml` file, or a `pyproject.toml`
with a `[tool.copydesk]` table. Commands find it from the spec's folder or from the
current folder, upwards (`find_project`). The marker may set the project's folders,
relative to the project: `output_dir`, `pipelines_dir`, `state_dir`,
`languagetool_dir`, `data_dir`. The environment (`COPYDESK_*`) overrides both.

Per-project state lives in `<project>/.copydesk/`; per-user data (the LanguageTool
jars) in the user's data folder (`user_data_dir`, through platformdirs), shared by
every project. Nothing is written inside the installed package.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_data_path

from copydesk.errors import ProjectError

MARKER = "copydesk.toml"
PROJECT_ENV = "COPYDESK_PROJECT_DIR"
FOLDER_KEYS = ("output_dir", "pipelines_dir", "state_dir", "languagetool_dir", "data_dir")


@dataclass(frozen=True)
class Project:
    """A found project: its folder, the marker file, and the folders the marker sets."""

    root: Path
    marker: Path | None
    folders: dict[str, Path] = field(default_factory=dict)


def user_data_dir() -> Path:
    """The user's data folder for copydesk (e.g. ~/.local/share/copydesk); not created here."""
    return user_data_path("copydesk", appauthor=False)


def _table(path: Path) -> dict[str, object] | None:
    """The copydesk table of a marker file, or None when the file is no marker."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"{path}: not a readable TOML file: {exc}") from exc
    if path.name == MARKER:
        return data
    tool = data.get("tool")
    table = tool.get("copydesk") if isinstance(tool, dict) else None
    return table if isinstance(table, dict) else None


def _folders(path: Path, table: dict[str, object]) -> dict[str, Path]:
    unknown = sorted(set(table) - set(FOLDER_KEYS))
    if unknown:
        raise ProjectError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(FOLDER_KEYS)}")
    folders: dict[str, Path] = {}
    for key, value in table.items():
        if not isinstance(value, str) or not value:
            raise ProjectError(f"{path}: {key} must be a folder path (a non-empty string)")
        folders[key] = path.parent / Path(value).expanduser()
    return folders


def load_project(root: Path) -> Project | None:
    """The project whose marker is in `root`, or None when `root` has none."""
    for name in (MARKER, "pyproject.toml"):
        marker = root / name
        table = _table(marker) if marker.is_file() else None
        if table is not None:
            return Project(root=root, marker=marker, folders=_folders(marker, table))
    return None


def find_project(start: Path | None = None) -> Project | None:
    """The nearest project at or above `start` (a folder or a file; default: the current folder)."""
    here = Path(start or Path.cwd()).absolute()
    if here.is_file() or (not here.exists() and here.suffix):
        here = here.parent
    for folder in (here, *here.parents):
        project = load_project(folder)
        if project is not None:
            return project
    return None


def current_project() -> Project:
    """The project of this process: COPYDESK_PROJECT_DIR, else found from the current folder.

    With no marker anywhere above, the current folder serves as the project (the
    folders are then relative to it, as before projects existed).
    """
    named = os.environ.get(PROJECT_ENV)
    if named:
        root = Path(named).expanduser().absolute()
        return load_project(root) or Project(root=root, marker=None)
    return find_project() or Project(root=Path.cwd().absolute(), marker=None)


def adopt_project_of(spec: Path) -> Project | None:
    """Make the spec's project this process's (and its children's) project.

    Sets COPYDESK_PROJECT_DIR unless it is set already, so the Prefect server, the
    served flows and LanguageTool started from here keep their state in that project.
    """
    if os.environ.get(PROJECT_ENV):
        return None
    project = find_project(spec)
    if project is not None:
        os.environ[PROJECT_ENV] = str(project.root)
    return project
