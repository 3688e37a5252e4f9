"""copydesk.locks.file_lock: the one cross-process lock, across real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from copydesk.locks import LockHeld, file_lock

HOLD = """
import sys, time
from copydesk.locks import file_lock
with file_lock(sys.argv[1], holder="pid-of-the-holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_non_blocking_lock_reports_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.lock"
    proc = _hold(path, 30)
    try:
        with pytest.raises(LockHeld) as info, file_lock(path, blocking=False, holder="me"):
            pass
        assert info.value.holder == "pid-of-the-holder"
    finally:
        proc.kill()
        proc.wait()
    # The holder died: the lock is free again (no stale lock file to clean up).
    with file_lock(path, blocking=False, holder="me"):
        assert path.read_text().strip() == "me"


def test_blocking_lock_waits_for_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    proc = _hold(path, 1.0)
    started = time.monotonic()
    with file_lock(path):
        waited = time.monotonic() - started
    proc.wait()
    assert waited >= 0.5
