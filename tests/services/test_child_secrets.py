"""The real LanguageTool and local-model servers, started from a shell that holds every secret
copydesk may see (the API key, the kept Prefect server's auth strings, a Prefect database URL
and password, other tools' tokens): read from the child's own /proc/PID/environ, none of them
reaches it, and what it writes in the state folder is its owner's alone (issue #20, findings
11 and 12).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest_services import make_settings
from test_process import PARENT_SECRETS

from copydesk.services.languagetool import LanguageToolServer
from copydesk.services.llama import LlamaServer


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in [folder, *folder.rglob("*")]}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["languagetool", "llama"])
def test_a_child_server_gets_no_secret_and_keeps_its_files_private(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PARENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    settings = make_settings(tmp_path / "state", languagetool_warmup_words=0)
    server = LanguageToolServer(settings) if kind == "languagetool" else LlamaServer(settings)
    old = os.umask(0o022)
    try:
        with server:
            assert server.pid is not None
            env = _environ_of(server.pid)
            modes = _modes(tmp_path / "state")
    finally:
        os.umask(old)
    assert os.environ["PREFECT_API_AUTH_STRING"] == PARENT_SECRETS["PREFECT_API_AUTH_STRING"]  # the parent has them
    leaked = sorted(set(PARENT_SECRETS) & set(env))
    assert leaked == [], leaked
    assert not [name for name in env if name.startswith("PREFECT_")], env  # no Prefect setting at all
    assert not [name for name, value in env.items() if "secret" in value.lower()], env
    for word in ("PASSWORD", "TOKEN", "SECRET", "AUTH"):
        assert not [name for name in env if word in name.upper()], env
    assert env["PATH"] == os.environ["PATH"]
    assert modes.pop(".") == 0o700 and modes, modes  # the state folder, and what is in it (the log, at least)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (tmp_path / "state" / name).is_dir() else 0o600)}
    assert wrong == {}, modes
