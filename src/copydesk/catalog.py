"""The pipelines folder: which specs it holds, which are scheduled, and what a name means.

Served flows (the `editor` and scheduled deployments) name a pipeline the way an
editor would: `tech-blog`. `resolve_pipeline` turns that into a spec file:

1. a path (it contains a slash or ends in .yaml/.yml): that file, relative to the
   working folder or else to the pipelines folder;
2. a name: the spec in the pipelines folder whose `name:` is that name, else the
   file whose stem is that name (so a broken spec still reports its own error).

The pipelines folder is `COPYDESK_PIPELINES_DIR` (default `pipelines/`). Only
its top level is read, `*.yaml` and `*.yml`. Nothing here imports Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from copydesk.errors import CopydeskError, SpecError
from copydesk.spec import PipelineSpec, load_spec

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    spec: PipelineSpec | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.spec is not None


def spec_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(f"{folder}: the pipelines folder does not exist (set COPYDESK_PIPELINES_DIR)")
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file() and not p.name.startswith("."))


def scan(folder: str | Path) -> list[CatalogEntry]:
    """Every spec file in the folder, loaded; a broken one carries its error instead."""
    entries = []
    for path in spec_files(folder):
        try:
            entries.append(CatalogEntry(path, spec=load_spec(path)))
        except CopydeskError as exc:
            entries.append(CatalogEntry(path, error=str(exc)))
    return entries


@dataclass(frozen=True)
class Schedules:
    """The scheduled specs of a folder, and what was wrong with the others."""

    specs: list[PipelineSpec]
    problems: list[str]
    #: Every valid spec name, scheduled or not.
    names: list[str]


def scheduled_specs(folder: str | Path) -> Schedules:
    """Valid specs with a `schedule:` block, one per name (a duplicate name is a problem)."""
    specs: list[PipelineSpec] = []
    problems: list[str] = []
    names: list[str] = []
    seen: dict[str, Path] = {}
    for entry in scan(folder):
        if entry.spec is None:
            problems.append(entry.error or f"{entry.path}: invalid spec")
            continue
        spec = entry.spec
        if spec.name in seen:
            problems.append(f"{entry.path}: pipeline name {spec.name!r} is already used by {seen[spec.name]}; skipped")
            continue
        seen[spec.name] = entry.path
        names.append(spec.name)
        if spec.schedule is not None:
            specs.append(spec)
    return Schedules(specs, problems, names)


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith(SPEC_SUFFIXES)


def resolve_pipeline(ref: str, folder: str | Path) -> Path:
    """The spec file `ref` names (see the module docstring); SpecError names what exists."""
    ref = (ref or "").strip()
    folder = Path(folder)
    if not ref:
        raise SpecError("pipeline is empty: give the name of a spec in the pipelines folder or a path to a spec file")
    if _looks_like_path(ref):
        given = Path(ref).expanduser()
        candidates = [given] if given.is_absolute() else [Path.cwd() / given, folder / given]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise SpecError(f"{ref}: no such pipeline spec (looked in {', '.join(str(c.parent) for c in candidates)})")
    entries = scan(folder)
    for entry in entries:
        if entry.spec is not None and entry.spec.name == ref:
            return entry.path.resolve()
    for entry in entries:
        if entry.path.stem == ref:
            return entry.path.resolve()
    available = sorted({e.spec.name for e in entries if e.spec is not None})
    listing = ", ".join(available) if available else "none"
    raise SpecError(f"no pipeline named {ref!r} in {folder} (COPYDESK_PIPELINES_DIR); available: {listing}")
