"""The pipelines folder: which pipelines it serves, which are scheduled, and what a name means.

Served flows (the `editor` form and the scheduled deployments) name a pipeline by
its spec's `name:` (`tech-blog`), never by a path: an editor's form is less
trusted than the operator's shell. A spec file is *served* when it

- is a `*.yaml` or `*.yml` file at the top level of the pipelines folder
  (`COPYDESK_PIPELINES_DIR`, default `pipelines/`), not hidden;
- has its real path (after symlinks) inside that folder: a symlink to a file
  elsewhere is never served;
- loads as a valid spec, and no earlier file (in file-name order) took its name.

`load_catalog` lists the served pipelines (and the problems of the other files);
`resolve_served` turns a name from a form into a served spec file, or raises a
SpecError that never echoes a path and never says whether some file exists.
`copydesk run SPEC` takes a path and does not come here: the operator is trusted.
Nothing here imports Prefect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from copydesk.errors import CopydeskError, SpecError
from copydesk.spec import NAME_PATTERN, PipelineSpec, load_spec, short

SPEC_SUFFIXES = (".yaml", ".yml")
#: A served pipeline's name, as the form sends it (the spec's `name:` rule, bounded).
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    spec: PipelineSpec | None = None
    error: str | None = None


@dataclass(frozen=True)
class Catalog:
    """The served pipelines of a folder, by name, and what was wrong with the other files."""

    #: Served name -> its spec file (real path), in file-name order.
    served: dict[str, Path] = field(default_factory=dict)
    specs: dict[str, PipelineSpec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The served names, sorted (the form's dropdown)."""
        return sorted(self.served)

    @property
    def scheduled(self) -> list[PipelineSpec]:
        """Served specs with a `schedule:` block."""
        return [spec for spec in self.specs.values() if spec.schedule is not None]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:  # a symlink loop
        return False


def spec_files(folder: str | Path) -> list[Path]:
    """The candidate spec files: top level, `*.yaml`/`*.yml`, not hidden, regular files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(f"{folder}: the pipelines folder does not exist (set COPYDESK_PIPELINES_DIR)")
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file() and not p.name.startswith("."))


def scan(folder: str | Path) -> list[CatalogEntry]:
    """Every candidate spec file, loaded; a broken or escaping one carries its error instead."""
    entries = []
    for path in spec_files(folder):
        if not _inside(path, Path(folder)):
            entries.append(CatalogEntry(path, error=f"{path}: a symlink to a file outside the pipelines folder; "
                                                    "not served"))
            continue
        try:
            entries.append(CatalogEntry(path, spec=load_spec(path)))
        except CopydeskError as exc:
            entries.append(CatalogEntry(path, error=str(exc)))
    return entries


def load_catalog(folder: str | Path) -> Catalog:
    """The served pipelines of `folder` (see the module docstring); a duplicate name is a problem."""
    catalog = Catalog()
    for entry in scan(folder):
        if entry.spec is None:
            catalog.problems.append(entry.error or f"{entry.path}: invalid spec")
            continue
        name = entry.spec.name
        if name in catalog.served:
            catalog.problems.append(f"{entry.path}: pipeline name {name!r} is already used by "
                                    f"{catalog.served[name]}; skipped")
            continue
        catalog.served[name] = entry.path.resolve()
        catalog.specs[name] = entry.spec
    return catalog


def check_name(ref: object) -> str:
    """`ref` if it is shaped like a pipeline name; SpecError otherwise, without echoing a path."""
    if not isinstance(ref, str):
        raise SpecError(f"pipeline must be the name of a served pipeline, not {type(ref).__name__}")
    if any(sep in ref for sep in ("/", "\\", "..")) or ref.startswith("~"):
        raise SpecError("pipeline: paths are not accepted here; choose a served pipeline by its name")
    if len(ref) > MAX_NAME_LENGTH or not re.fullmatch(NAME_PATTERN, ref):
        raise SpecError(f"pipeline {short(ref)} is not a pipeline name (lower-case letters, digits and "
                        "dashes); choose a served pipeline by its name")
    return ref


def resolve_served(ref: object, folder: str | Path) -> tuple[Path, PipelineSpec]:
    """The served spec named `ref`: its file and its loaded spec. SpecError names the served ones."""
    name = check_name(ref)
    catalog = load_catalog(folder)
    if name not in catalog.served:
        listing = ", ".join(catalog.names) or "none"
        raise SpecError(f"no pipeline named {name!r} is served (COPYDESK_PIPELINES_DIR); available: {listing}")
    return catalog.served[name], catalog.specs[name]
