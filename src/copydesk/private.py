"""Files only their owner reads: the state folder, its logs, records and locks, and a run's
call store and reservation journal.

    private_dir(path)                 the folder (and its missing parents), 0700; an existing
                                      folder of ours with group/other bits is tightened to 0700
    open_private(path, "a"|"ab"|...)  open for writing, created 0600 whatever the umask; an
                                      existing file of ours is tightened to 0600
    write_private(path, text)         written whole, atomically, 0600
    create_private(path, text)        the same, only if `path` does not exist yet (False if it did)
    make_private(path)                an existing file (0600) or folder (0700) of ours tightened
    PRIVATE_UMASK                     for child processes whose files are private too

On a shared machine the default umask (022) leaves files readable by every user: articles,
prompts, logs and the local Prefect server's database. Off POSIX the modes do nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: The umask of a child process whose every file is private (the Prefect server's database,
#: the servers' own files).
PRIVATE_UMASK = 0o077

_WRITE_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND}


def _tighten(fd_or_path: int | Path, mode: int) -> None:
    """chmod to `mode` when the object is ours and gives group or others any access (POSIX only)."""
    if os.name != "posix":
        return
    info = os.fstat(fd_or_path) if isinstance(fd_or_path, int) else os.stat(fd_or_path)
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
        if isinstance(fd_or_path, int):
            os.fchmod(fd_or_path, mode)
        else:
            os.chmod(fd_or_path, mode)


def private_dir(path: Path | str) -> Path:
    """`path` as a folder only its owner may enter (0700), created with its parents if missing."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        _tighten(path, PRIVATE_DIR_MODE)
    return path


def open_private(path: Path | str, mode: str = "a", *, encoding: str | None = "utf-8") -> IO[Any]:
    """Open `path` for writing (`mode`: w, a or a+, each also with b): a new file is created
    0600, an existing one of ours is tightened to 0600."""
    binary = "b" in mode
    flags = _WRITE_FLAGS[mode.replace("b", "")]
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        with contextlib.suppress(OSError):
            _tighten(fd, PRIVATE_FILE_MODE)
        return os.fdopen(fd, mode, encoding=None if binary else encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` whole (a reader never sees half of it), mode 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def create_private(path: Path | str, text: str, *, encoding: str = "utf-8") -> bool:
    """Write `text` to a new file `path` (0600), atomically; False, and nothing written, when
    `path` already exists (whoever comes second, among processes racing, keeps the first's)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
        os.link(tmp, path)  # fails when it exists: never replaces another process's file
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def make_private(path: Path | str) -> None:
    """Tighten an existing file (to 0600) or folder (to 0700) of ours; nothing if it is missing."""
    path = Path(path)
    with contextlib.suppress(OSError):
        _tighten(path, PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE)
