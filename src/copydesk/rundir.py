"""The run folder: every name copydesk writes, and how each file is read and written.

Layout, under the output folder (`--out DIR`, default `outputs/`)::

    <out>/copydesk.prom          cumulative metrics of every run (+ .lock, .corrupt-<time>)
    <out>/<run_id>/
        manifest.json            pipeline, fingerprint of spec + templates, topics (written first)
        articles.csv             one row per requested topic, whatever happened to it
        published/<slug>.md      passed QC: a static-site generator can take this folder as is
        held/<slug>.md           needs_review, rejected and incomplete articles
        site/                    export.target's layout when export.dir is unset (copydesk.siteexport)
        qc_report.json           every check's result per article
        summary.json             counts, tokens, budget
        calls.jsonl              the call store that lets `--run-id` resume (0600)
        reservations.jsonl       the shared allowance's reservations (see copydesk.allowance; 0600)
        metrics.prom             this run's Prometheus text file
        reviews.jsonl            the audit trail of review decisions
        .review-intent.json      a review decision being applied (see copydesk.review)
        .run.lock, .review.lock  held by the process running / reviewing the folder

A run folder and its exports follow the user's umask; the call store, the reservation
journal and the locks hold prompts and answers, and are the user's alone (0600,
copydesk.private).

The CSV is read and written through pandas only: UTF-8 (with a byte-order mark
by default, so Excel reads Chinese), CRLF line ends, and every text cell that a
spreadsheet would run as a formula neutralised. Markdown files start with YAML
front matter (`render_front_matter` / `parse_front_matter`). Statuses are the
`Status` enum; `status_counts` makes the `by_status` mapping of the reports.

A run id names a folder in the output folder: it must match `RUN_ID_PATTERN` as
a whole, be a name Windows can hold (no device name such as CON or nul.txt, no
trailing dot: copydesk.slugs.windows_name_problem, the rule slugs follow too), and
may not be a name copydesk writes there itself (case-insensitive).
Resuming a run id is allowed only for the same pipeline (name and fingerprint)
with the same topics or more (`check_resume`, before anything is touched).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import yaml
from jinja2 import Environment, TemplateSyntaxError, meta

from copydesk import boundedjson
from copydesk.controls import clean_text, clean_value
from copydesk.errors import InputError
from copydesk.markup import split_front_matter
from copydesk.redact import redact_bytes, redact_known
from copydesk.slugs import windows_name_problem

if TYPE_CHECKING:
    from copydesk.spec import PipelineSpec


class RunFolderError(InputError):
    """A run folder, or a run id naming one, that copydesk cannot use as asked (exit 2)."""


class Status(StrEnum):
    """An article's status: the `status` column of the CSV and of the front matter."""

    PUBLISHED = "published"  # passed QC
    NEEDS_REVIEW = "needs_review"  # a soft QC failure, or QC could not run
    REJECTED = "rejected"  # moderation flagged it, or a hard QC failure
    INCOMPLETE = "incomplete"  # generation stopped (budget, error); partial text kept


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

# ------------------------------------------------------------------------------ names

#: In the output folder.
CUMULATIVE_METRICS_NAME = "copydesk.prom"
#: In a run folder.
MANIFEST_NAME = "manifest.json"
CSV_NAME = "articles.csv"
PUBLISHED_DIR = "published"
HELD_DIR = "held"
#: export.target's layout (hugo, jekyll, mkdocs) when no export.dir names the site's folder.
SITE_DIR = "site"
ARTICLE_DIRS: tuple[str, ...] = (PUBLISHED_DIR, HELD_DIR)
QC_REPORT_NAME = "qc_report.json"
SUMMARY_NAME = "summary.json"
CALLS_NAME = "calls.jsonl"
RESERVATIONS_NAME = "reservations.jsonl"
RUN_METRICS_NAME = "metrics.prom"
REVIEW_LOG_NAME = "reviews.jsonl"
REVIEW_INTENT_NAME = ".review-intent.json"
RUN_LOCK_NAME = ".run.lock"
REVIEW_LOCK_NAME = ".review.lock"

#: Files whose presence alone does not make a folder a run (a lock taken before a crash).
_NOT_CONTENT = frozenset({RUN_LOCK_NAME, REVIEW_LOCK_NAME})

#: Every name copydesk writes in the output folder, lower-cased: none of them can be a run id
#: (a run folder of that name would clobber it, or be clobbered)...
RESERVED_NAMES: frozenset[str] = frozenset({CUMULATIVE_METRICS_NAME.lower()})
#: ...nor start with one of these (the cumulative file's lock and the copies set aside).
RESERVED_PREFIXES: tuple[str, ...] = (CUMULATIVE_METRICS_NAME.lower(),)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: A slug is one file name: what copydesk.slugs makes, with room for hand-made ones.
SLUG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_run_id(run_id: str, *, field: str = "--run-id") -> str:
    """`run_id` if it can name a run folder; RunFolderError (exit 2) otherwise, naming `field`
    (the flag, or the form's field)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise RunFolderError(
            f"{field} {run_id!r:.120}: use letters, digits, dots, dashes and underscores "
            "(at most 100, starting with a letter or digit), no '..'"
        )
    if problem := windows_name_problem(run_id):
        raise RunFolderError(f"{field} {run_id!r}: {problem}; choose another run id")
    lowered = run_id.lower()
    if lowered in RESERVED_NAMES or lowered.startswith(RESERVED_PREFIXES):
        raise RunFolderError(
            f"{field} {run_id!r}: copydesk writes a file of that name itself; choose another run id"
        )
    return run_id


def folder_for(status: Status | str) -> str:
    """`published` for a published article, `held` for every other status."""
    return PUBLISHED_DIR if Status(status) == Status.PUBLISHED else HELD_DIR


def article_relpath(status: Status | str, slug: str) -> str:
    """Where an article of that status lives, relative to the run folder (the CSV's `path`)."""
    return f"{folder_for(status)}/{slug}.md"


def article_file(run_dir: Path, relpath: str) -> Path:
    """The article file a CSV `path` names, confined to the run's own article folders.

    The CSV is data anyone could have edited: only `published/<slug>.md` and
    `held/<slug>.md` directly inside `run_dir` are accepted, and neither the
    folder nor the file may be a symbolic link. RunFolderError otherwise.
    """
    where = f"{run_dir / CSV_NAME}: path {relpath!r:.200}"
    folder, sep, name = str(relpath).partition("/")
    if not sep or folder not in ARTICLE_DIRS or not name.endswith(".md") or not SLUG_PATTERN.fullmatch(name[:-3]):
        raise RunFolderError(f"{where} is outside the run folder's {PUBLISHED_DIR}/ and {HELD_DIR}/ folders")
    base = run_dir / folder
    if base.is_symlink() or (run_dir.resolve() / folder) != base.resolve():
        raise RunFolderError(f"{where}: {base} is a link outside the run folder")
    path = base / name
    if path.is_symlink():
        raise RunFolderError(f"{where}: the file is a symbolic link; articles must be plain files")
    return path


# ------------------------------------------------------------------------------ writing files

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: str | bytes, encoding: str = "utf-8", *, durable: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    `durable` also fsyncs the file and its folder, so the write survives a power cut. No known
    secret reaches the file in any encoding (`copydesk.redact.redact_known`)."""
    data = redact_known(data) if isinstance(data, str) else redact_bytes(data)
    payload = data.encode(encoding) if isinstance(data, str) else data
    _atomic(path, lambda handle: handle.write(payload), durable=durable)


def _atomic(path: Path, write: Callable[[BinaryIO], object], *, durable: bool) -> None:
    """`write` into a temporary file next to `path`, then rename it to `path` (see `atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; exports are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so renames and deletions in it are on disk (best effort off POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Encoded JSON is written (and redacted) in pieces of about this many characters.
JSON_WRITE_CHARS = 1 << 16


def write_json(path: Path, data: Any, *, durable: bool = False) -> Path:
    """`data` as indented JSON, written as it is encoded (atomically, as `atomic_write`): the same
    bytes as `json.dumps(..., indent=2)`, without the whole text in memory at once. An indented
    `json.dumps` builds a list of every piece first: ~47 KB per article for a QC report, which
    took a 10,000-topic run from ~500 MB to 1,001 MB as it finished (issue 25). Every string
    is one piece of the encoder's, never split between two writes, so redaction sees each whole."""
    encoder = json.JSONEncoder(ensure_ascii=False, indent=2, default=str)

    def write(handle: BinaryIO) -> None:
        pieces: list[str] = []
        size = 0
        for piece in encoder.iterencode(data):
            pieces.append(piece)
            size += len(piece)
            if size >= JSON_WRITE_CHARS:
                handle.write(redact_known("".join(pieces)).encode("utf-8"))
                pieces, size = [], 0
        pieces.append("\n")
        handle.write(redact_known("".join(pieces)).encode("utf-8"))

    _atomic(path, write, durable=durable)
    return path


def read_json(path: Path) -> Any | None:
    """The JSON document at `path`, or None when it is missing or unreadable."""
    try:
        return boundedjson.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def update_json(path: Path, update: Callable[[Any], None]) -> None:
    """Apply `update` to an optional report in place; a missing or broken one is left alone."""
    data = read_json(path)
    if data is None:
        return
    update(data)
    write_json(path, data)


# ------------------------------------------------------------------------------ the CSV

CSV_COLUMNS = [
    "run_id",
    "topic",
    "title",
    "slug",
    "status",
    "reasons",
    "word_count",
    "sections",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "grammar_issues",
    "moderation_flagged",
    "model",
    "path",
    "est_cost_usd",
    "fallback_from",
    "cached_calls",
    "cached_prompt_tokens",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_BOM = b"\xef\xbb\xbf"


def neutralise(cell: Any) -> Any:
    """A text cell without control or bidi characters, prefixed when a spreadsheet would
    evaluate it (OWASP's CSV injection advice).

    Idempotent: a neutralised cell starts with `'` and is left as it is."""
    cell = clean_value(cell)
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


@dataclass
class CsvTable:
    """`articles.csv` as text cells, exactly as written (no type guessing, empty cells are "")."""

    columns: list[str]
    rows: list[dict[str, str]]
    bom: bool = True


def _pandas() -> Any:
    """pandas, imported on first use: it costs ~0.3 s and only the CSV needs it."""
    import pandas

    return pandas


def write_csv(run_dir: Path, rows: Iterable[Mapping[str, Any]], *, bom: bool = True,
              extra_columns: Sequence[str] = ()) -> Path:
    """Write the export's `articles.csv` atomically: `CSV_COLUMNS`, then `extra_columns` (the spec's
    extra stages, in their declared order), every cell neutralised, `grammar_issues` an integer
    column (empty where unknown)."""
    frame = _pandas().DataFrame(list(rows), columns=[*CSV_COLUMNS, *extra_columns])
    for column in frame.columns:
        frame[column] = frame[column].map(neutralise)
    frame["grammar_issues"] = frame["grammar_issues"].astype("Int64")
    return _write_frame(run_dir, frame, bom)


def read_csv(run_dir: Path) -> CsvTable:
    """Read `articles.csv` as text cells; RunFolderError when there is none or it cannot be read."""
    pd = _pandas()
    path = run_dir / CSV_NAME
    try:
        with path.open("rb") as handle:
            head = handle.read(3)
        frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError:
        raise RunFolderError(f"{run_dir}: not a run folder (no {CSV_NAME})") from None
    except IsADirectoryError:
        raise RunFolderError(f"{path}: a folder, not a CSV file") from None
    except pd.errors.EmptyDataError:
        raise RunFolderError(f"{path}: the file is empty") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read: {exc}") from None
    columns = [str(c) for c in frame.columns]
    rows = [dict(zip(columns, map(str, values), strict=True)) for values in frame.itertuples(index=False, name=None)]
    return CsvTable(columns, rows, bom=head == _BOM)


def render_csv(table: CsvTable) -> bytes:
    """The bytes of `table` as `articles.csv`: its columns, its BOM, the cells as they are
    (a caller that sets a cell from data neutralises it)."""
    frame = _pandas().DataFrame(table.rows, columns=table.columns, dtype=object)
    return _csv_bytes(frame, table.bom)


def rewrite_csv(run_dir: Path, table: CsvTable) -> Path:
    """Write back a table read with `read_csv`, atomically (see `render_csv`)."""
    path = run_dir / CSV_NAME
    atomic_write(path, render_csv(table))
    return path


def _csv_bytes(frame: Any, bom: bool) -> bytes:
    text = frame.to_csv(index=False, lineterminator="\r\n")
    return (_BOM if bom else b"") + text.encode("utf-8")


def _write_frame(run_dir: Path, frame: Any, bom: bool) -> Path:
    path = run_dir / CSV_NAME
    atomic_write(path, _csv_bytes(frame, bom))
    return path


# ------------------------------------------------------------------------------ front matter


def render_front_matter(front: Mapping[str, Any], body: str) -> str:
    """`---`, the YAML mapping, `---`, then `body` (export passes a leading blank line); no
    control or bidi character in either (`copydesk.controls`)."""
    header = yaml.safe_dump(clean_value(dict(front)), allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{header}---\n{clean_text(body)}"


def load_front_matter(header: str) -> dict[str, Any]:
    """The mapping of a front matter's YAML text; ValueError when it is not one."""
    try:
        front = yaml.load(header, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"unreadable front matter: {exc}") from None
    if not isinstance(front, dict):
        raise ValueError("the front matter is not a mapping")
    return front


def parse_front_matter(text: str, where: Path | str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of an article's Markdown; RunFolderError naming `where` otherwise."""
    if not text.startswith("---\n"):
        raise RunFolderError(f"{where}: no YAML front matter")
    header, body = split_front_matter(text)
    if header is None:
        raise RunFolderError(f"{where}: the front matter is not closed with ---")
    try:
        return load_front_matter(header), body
    except ValueError as exc:
        raise RunFolderError(f"{where}: {exc}") from None


# ------------------------------------------------------------------------------ statuses


def status_counts(statuses: Iterable[Status | str]) -> dict[str, int]:
    """The `by_status` mapping of summary.json: status → articles, in order of first appearance."""
    return dict(Counter(Status(s).value for s in statuses))


# ------------------------------------------------------------------------------ the manifest


@dataclass
class RunManifest:
    """What a run folder was made by: checked before a run id is resumed."""

    pipeline: str
    #: sha256 over the spec file's bytes and every template's bytes (see `fingerprint`).
    fingerprint: str
    topics: list[str]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_spec(cls, spec: PipelineSpec, prompts_dir: Path, topics: Iterable[str]) -> RunManifest:
        """The manifest of a run of `spec` (its file, or its JSON when it has none) over `topics`."""
        names = [stage.prompt for _, stage in spec.stages.items()]
        if spec.system_prompt:
            names.append(spec.system_prompt)
        source: Path | bytes = spec.source or spec.model_dump_json().encode("utf-8")
        return cls(spec.name, fingerprint(source, template_files(prompts_dir, names)), list(topics))


def fingerprint(spec: Path | bytes, templates: Mapping[str, Path]) -> str:
    """sha256 of the spec file (or its bytes) and each template (by name, sorted), each framed
    by its name and length."""
    digest = hashlib.sha256()

    def add(label: str, source: Path | bytes) -> None:
        try:
            data = source if isinstance(source, bytes) else source.read_bytes()
        except OSError as exc:
            raise RunFolderError(f"{source}: cannot read it to fingerprint the run: {exc.strerror}") from None
        name = label.encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)

    add("spec", spec)
    for name in sorted(templates):
        add(f"template:{name}", templates[name])
    return digest.hexdigest()


def template_files(prompts_dir: Path, names: Iterable[str]) -> dict[str, Path]:
    """The templates `names` and every template they include, import or extend by a constant
    name, inside `prompts_dir`: what `fingerprint` hashes besides the spec."""
    root = prompts_dir.resolve()
    found: dict[str, Path] = {}
    queue = list(names)
    while queue:
        name = queue.pop()
        if name in found:
            continue
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue  # the prompt loader reports it; a fingerprint only hashes what is there
        found[name] = path
        try:
            ast = Environment().parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, TemplateSyntaxError):
            continue
        queue.extend(ref for ref in meta.find_referenced_templates(ast) if isinstance(ref, str))
    return found


def read_manifest(run_dir: Path) -> RunManifest | None:
    """The manifest of `run_dir`, None when it has none; RunFolderError when it is unreadable."""
    path = run_dir / MANIFEST_NAME
    try:
        data = boundedjson.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable run manifest ({exc}); this run cannot be resumed") from None
    try:
        return RunManifest(
            pipeline=str(data["pipeline"]),
            fingerprint=str(data["fingerprint"]),
            topics=[str(t) for t in data["topics"]],
            created=str(data.get("created", "")),
            version=int(data.get("version", 1)),
        )
    except (KeyError, TypeError, ValueError):
        raise RunFolderError(f"{path}: not a copydesk run manifest; this run cannot be resumed") from None


def write_manifest(run_dir: Path, manifest: RunManifest) -> Path:
    """Record what makes the run (first thing a run writes; rewritten when a resume adds topics)."""
    return write_json(run_dir / MANIFEST_NAME, manifest.to_dict(), durable=True)


def _has_content(run_dir: Path) -> bool:
    try:
        with os.scandir(run_dir) as entries:
            return any(entry.name not in _NOT_CONTENT for entry in entries)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def prepare_folder(run_dir: Path, manifest: RunManifest) -> RunManifest:
    """`manifest` once `check_resume` allows it, keeping the first run's `created` on a resume:
    what `write_manifest` records when the run starts."""
    old = check_resume(run_dir, manifest)
    if old is not None:
        manifest.created = old.created
    return manifest


def check_resume(run_dir: Path, manifest: RunManifest) -> RunManifest | None:
    """May a run described by `manifest` use `run_dir`? Reads only; never touches the folder.

    A missing or empty folder: yes (a new run). A folder made by a run of the same
    pipeline (name and fingerprint) whose topics, with their repetitions, are all
    among the new ones: yes (a resume; returns the old manifest). Anything else
    raises RunFolderError (exit 2): another pipeline, a changed spec or template,
    a dropped topic, or a non-empty folder without a manifest.
    """
    run_id = run_dir.name
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: exists and is not a folder; choose another run id")
    old = read_manifest(run_dir) if run_dir.is_dir() else None
    if old is None:
        if _has_content(run_dir):
            raise RunFolderError(
                f"{run_dir}: the folder exists but has no {MANIFEST_NAME}, so nothing shows which pipeline and "
                "topics made it; copydesk will not write into it. Choose another run id"
            )
        return None
    if old.pipeline != manifest.pipeline:
        raise RunFolderError(
            f"run {run_id} was made by pipeline {old.pipeline!r}, not {manifest.pipeline!r}: a resume must use "
            "the same pipeline. Choose another run id"
        )
    if old.fingerprint != manifest.fingerprint:
        raise RunFolderError(
            f"run {run_id}: the spec or a template of pipeline {old.pipeline!r} changed since the run started "
            f"({MANIFEST_NAME}); a resume needs the same files. Restore them, or choose another run id"
        )
    missing = Counter(old.topics) - Counter(manifest.topics)
    if missing:
        listed = ", ".join(repr(t)[:80] for t in list(missing.elements())[:5])
        more = f" and {sum(missing.values()) - 5} more" if sum(missing.values()) > 5 else ""
        raise RunFolderError(
            f"run {run_id}: a resume may add topics but not drop any; missing: {listed}{more}. "
            "Give every earlier topic again, or choose another run id"
        )
    return old
