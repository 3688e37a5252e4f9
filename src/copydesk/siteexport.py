"""Writing articles into a site's folder (`export.dir`) without touching anyone else's files.

A run writes each article it may put into the site (see `copydesk.sitetargets`) with
`atomic_write`, and records every file it wrote or removed in the site's journal,
`.copydesk-export.jsonl`: one JSON line per write (path, run id, slug, title, date,
status, sha256 of the bytes written) or removal. The journal is what makes a file
copydesk's; the rules:

- a file is **replaced or removed** only when its last journal line is a write by this
  run and its bytes are still the ones written (a resume rewrites its own files; a file
  edited by hand since is the editor's and stays as it is: a note says so);
- a file the journal does not give to this run (a hand-written page, another run's
  article) is never replaced or removed: the article takes the next free name
  (`<slug>-2`, `-3`, ...), unless `export.overwrite: true`;
- an article that changes place (a Jekyll draft published on a resume, an MkDocs page
  held) has its earlier file removed under the same rule; at the end of the run, files
  of this run that no article owns any more are removed too;
- the first write keeps the article's `date`; later writes of the same run move `lastmod`.

Two runs may write into one site at once: every decision and journal line is taken
under a lock on `.copydesk-export.lock` (0600). MkDocs has no drafts and no folder nav,
so the mkdocs target also keeps `copydesk-nav.yml` in the site's folder: a `nav:` of
every article copydesk wrote there, newest first (paste it into mkdocs.yml's nav, or
name it as the config's `INHERIT:`).

Nothing here raises for a file it cannot write in the middle of a run: the article
keeps its run-folder copy and `notes` says what did not reach the site.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from copydesk import sitetargets
from copydesk.article import Article, Status
from copydesk.controls import clean_line
from copydesk.errors import InputError
from copydesk.locks import file_lock
from copydesk.rundir import atomic_write
from copydesk.sanitize import inert_text
from copydesk.sitetargets import Placement

log = logging.getLogger(__name__)

JOURNAL_NAME = ".copydesk-export.jsonl"
LOCK_NAME = ".copydesk-export.lock"
NAV_NAME = "copydesk-nav.yml"
#: How many other names (`<slug>-2` ...) an article tries before it gives up on the site.
MAX_ALTERNATIVES = 50


class SiteFolderError(InputError):
    """`export.dir` names no folder copydesk can write into (exit 2)."""


@dataclass
class Record:
    """One journal line: a file copydesk wrote (`op` write) or removed (`op` remove)."""

    op: str
    path: str
    run_id: str
    slug: str = ""
    site_slug: str = ""
    title: str = ""
    date: str = ""
    lastmod: str = ""
    status: str = ""
    sha256: str = ""


def check_site_dir(root: Path, where: str = "export.dir") -> Path:
    """`root` when it is a folder this process can write into; SiteFolderError naming `where` otherwise."""
    if not root.exists():
        raise SiteFolderError(f"{where}: {root} does not exist; point it at the site's folder (a checkout)")
    if not root.is_dir():
        raise SiteFolderError(f"{where}: {root} is not a folder")
    if not os.access(root, os.W_OK | os.X_OK):
        raise SiteFolderError(f"{where}: {root} is not writable by this user")
    return root


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(eq=False)
class SiteExporter:
    """Puts a run's articles into one site folder (see the module docstring)."""

    root: Path
    _: KW_ONLY
    target: str
    run_id: str
    render: Callable[[Article, Placement], str]
    section: str | None = None
    drafts: bool = True
    overwrite: bool = False
    #: What did not reach the site, one line each (the run exporter's notes).
    notes: list[str] = field(default_factory=list)
    #: The journal replayed: path -> its last write (removed paths are dropped).
    files: dict[str, Record] = field(default_factory=dict, init=False)
    _offset: int = field(default=0, init=False, repr=False)

    # -- the journal ---------------------------------------------------------------

    def _refresh(self) -> None:
        """Read the journal lines written since the last look (all of it when it shrank)."""
        path = self.root / JOURNAL_NAME
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self.files, self._offset = {}, 0
            return
        if size < self._offset:
            self.files, self._offset = {}, 0
        with path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        for line in data[:end].splitlines():
            try:
                record = Record(**json.loads(line))
            except (ValueError, TypeError):
                continue  # not a line copydesk wrote: ignored, and so is the file it names
            if not self._inside(record.path):
                continue  # a line naming a path outside the site (edited by hand): never acted on
            if record.op == "write":
                self.files[record.path] = record
            else:
                self.files.pop(record.path, None)

    def _inside(self, relpath: str) -> bool:
        """Is `relpath` a plain relative path of the kind copydesk writes, inside the site after symlinks?"""
        if not isinstance(relpath, str) or "\\" in relpath or not (relpath.endswith(".md") or relpath == NAV_NAME):
            return False
        parts = relpath.split("/")
        if any(not part or part.startswith(".") for part in parts):
            return False
        root = self.root.resolve()
        return (root / relpath).resolve().is_relative_to(root)

    def _append(self, record: Record) -> None:
        line = json.dumps({k: v for k, v in asdict(record).items() if v}, ensure_ascii=False) + "\n"
        with (self.root / JOURNAL_NAME).open("ab") as handle:
            handle.write(line.encode("utf-8"))
        self._offset = (self.root / JOURNAL_NAME).stat().st_size
        if record.op == "write":
            self.files[record.path] = record
        else:
            self.files.pop(record.path, None)

    # -- ownership -----------------------------------------------------------------

    def _mine(self, relpath: str) -> bool:
        """Is the file at `relpath` this run's, unchanged since it was written?"""
        record = self.files.get(relpath)
        return record is not None and record.run_id == self.run_id and _sha256(self.root / relpath) == record.sha256

    def _may_write(self, relpath: str) -> bool:
        path = self.root / relpath
        if path.is_symlink() or path.is_dir() or not self._inside(relpath):
            return False
        return not path.exists() or self.overwrite or self._mine(relpath)

    def _remove(self, relpath: str) -> None:
        """Remove this run's file at `relpath` if it is still as written; forget it either way."""
        path = self.root / relpath
        if self._inside(relpath) and not path.is_symlink() and (self._mine(relpath) or not path.exists()):
            path.unlink(missing_ok=True)
        else:
            self._note(f"{path}: edited since copydesk wrote it; left in place")
        self._append(Record("remove", relpath, self.run_id))

    def _note(self, text: str) -> None:
        log.warning("export.dir: %s", text)
        self.notes.append(f"export.dir: {text}")

    # -- articles ------------------------------------------------------------------

    def write(self, article: Article) -> str | None:
        """Put `article` into the site (or take it out, when it may no longer be there).

        Returns the file's path relative to the site's folder, or None."""
        try:
            with file_lock(self.root / LOCK_NAME):
                self._refresh()
                return self._write(article)
        except OSError as exc:
            self._note(f"{article.slug}: not written into {self.root}: {exc.strerror or exc}")
            return None

    def _write(self, article: Article) -> str | None:
        earlier = [r for r in self.files.values() if r.run_id == self.run_id and r.slug == article.slug]
        now = datetime.now(UTC).replace(microsecond=0)
        date = datetime.fromisoformat(earlier[0].date) if earlier else now
        draft = article.status != Status.PUBLISHED
        target: Placement | None = None
        if sitetargets.goes_to_site(self.target, article.status, drafts=self.drafts):
            target = self._place(article, earlier, date, now, draft)
        for record in earlier:  # its earlier files elsewhere go; one edited by hand since stays, still listed
            edited = (self.root / record.path).exists() and not self._mine(record.path)
            if (target is None or record.path != target.relpath) and not edited:
                self._remove(record.path)
        if target is None:
            return None
        path = self.root / target.relpath
        atomic_write(path, self.render(article, target))
        self._append(Record("write", target.relpath, self.run_id, article.slug, target.site_slug,
                            inert_text(clean_line(article.display_title))[:300], sitetargets.rfc3339(date), sitetargets.rfc3339(now),
                            article.status.value, _sha256(path) or ""))
        return target.relpath

    def _place(self, article: Article, earlier: list[Record], date: datetime, now: datetime,
               draft: bool) -> Placement | None:
        """The first name the article may take: its earlier one, its slug, then `<slug>-2`, ..."""
        names = [r.site_slug for r in earlier if r.site_slug]
        names += [article.slug] + [f"{article.slug}-{n}" for n in range(2, MAX_ALTERNATIVES + 2)]
        for site_slug in dict.fromkeys(names):
            relpath = sitetargets.relpath(self.target, slug=site_slug, date=date, draft=draft, section=self.section)
            if self._may_write(relpath):
                if site_slug != article.slug:
                    log.info("export.dir: %s is taken by a file copydesk did not write for this run; using %s",
                             sitetargets.relpath(self.target, slug=article.slug, date=date, draft=draft,
                                                 section=self.section), relpath)
                return Placement(relpath, site_slug, date, now, draft)
            if any(r.path == relpath for r in earlier):  # this run's own file, edited by hand since
                self._note(f"{self.root / relpath}: edited since copydesk wrote it; not overwritten "
                           "(export.overwrite: true replaces it)")
                return None
        self._note(f"{article.slug}: every name up to -{MAX_ALTERNATIVES + 1} is taken in {self.root}; not written")
        return None

    def finish(self, slugs: Iterable[str]) -> None:
        """Remove this run's files that no article of `slugs` owns; write the MkDocs nav."""
        keep = set(slugs)
        try:
            with file_lock(self.root / LOCK_NAME):
                self._refresh()
                for record in [r for r in self.files.values() if r.run_id == self.run_id]:
                    if record.slug not in keep and record.path != NAV_NAME:
                        self._remove(record.path)
                if self.target == "mkdocs":
                    self._write_nav()
        except OSError as exc:
            self._note(f"not finished in {self.root}: {exc.strerror or exc}")

    def _write_nav(self) -> None:
        """copydesk-nav.yml: every article copydesk wrote into docs/, newest first."""
        pages = sorted((r for r in self.files.values() if r.path.startswith("docs/")),
                       key=lambda r: (r.date, r.path), reverse=True)
        nav = [{r.title or r.site_slug: r.path.removeprefix("docs/")} for r in pages]
        text = ("# Written by copydesk (export.target: mkdocs): every article it wrote into docs/, newest first.\n"
                "# Paste it into mkdocs.yml's nav, or name this file as mkdocs.yml's INHERIT.\n"
                + yaml.safe_dump({"nav": nav}, allow_unicode=True, sort_keys=False, width=1000))
        path = self.root / NAV_NAME
        record = self.files.get(NAV_NAME)
        ours = record is not None and _sha256(path) == record.sha256
        if path.exists() and not ours and not self.overwrite:
            self._note(f"{path}: not written by copydesk; the nav is not updated (export.overwrite: true replaces it)")
            return
        atomic_write(path, text)
        self._append(Record("write", NAV_NAME, self.run_id, sha256=_sha256(path) or ""))
