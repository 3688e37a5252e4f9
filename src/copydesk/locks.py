"""Cross-process locks on a file: the one `flock` helper copydesk uses.

    with file_lock(path):                          wait for the lock
    with file_lock(path, blocking=False,
                   holder="pid 12 on host"):        take it now or raise LockHeld

The lock is an advisory `flock(LOCK_EX)` on `path` (created, with its folder,
when missing), released when the block ends or the process dies, so a killed
process never leaves a stale lock. With `holder`, the text is written into the
lock file while it is held, and `LockHeld.holder` reports what the holder
wrote. The lock file is its owner's alone (0600). Off POSIX (no `fcntl`) the block runs unlocked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from copydesk.private import open_private

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class LockHeld(Exception):
    """A non-blocking `file_lock` found the lock taken; `holder` is what its holder wrote."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder}")
        self.path = path
        self.holder = holder


@contextlib.contextmanager
def file_lock(path: Path | str, *, blocking: bool = True, holder: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_private(path, "a+") as handle:
        if fcntl is None:  # pragma: no cover
            yield
            return
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            handle.seek(0)
            raise LockHeld(path, handle.read().strip() or "another process") from None
        try:
            if holder is not None:
                handle.seek(0)
                handle.truncate()
                handle.write(holder + "\n")
                handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
