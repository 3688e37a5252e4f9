"""Projects (copydesk.project, the settings' folders), `copydesk init` and `copydesk setup`'s downloads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT

from copydesk.errors import ProjectError, ServiceError
from copydesk.project import PROJECT_ENV, find_project, load_project, user_data_dir
from copydesk.provision import STAMP, fetch_languagetool, read_lock, up_to_date
from copydesk.scaffold import init_project
from copydesk.settings import Settings

FOLDER_ENV = ("COPYDESK_STATE_DIR", "COPYDESK_OUTPUT_DIR", "COPYDESK_PIPELINES_DIR", "COPYDESK_LANGUAGETOOL_DIR",
              "COPYDESK_DATA_DIR", PROJECT_ENV)


@pytest.fixture
def no_folder_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FOLDER_ENV:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- finding the project


def test_the_project_is_found_upwards_and_sets_the_folders(tmp_path, monkeypatch, no_folder_env):
    (tmp_path / "copydesk.toml").write_text('output_dir = "published"\nlanguagetool_dir = "../jars"\n')
    deep = tmp_path / "pipelines" / "team"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    settings = Settings()
    assert settings.state_dir == tmp_path / ".copydesk"
    assert settings.output_dir == tmp_path / "published"
    assert settings.pipelines_dir == tmp_path / "pipelines"
    assert settings.languagetool_dir == tmp_path / "../jars"
    assert settings.data_dir == user_data_dir()
    # the environment overrides the marker
    monkeypatch.setenv("COPYDESK_OUTPUT_DIR", "/srv/out")
    monkeypatch.setenv("COPYDESK_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    assert settings.output_dir == Path("/srv/out") and settings.languagetool_dir == tmp_path / "../jars"
    assert settings.data_dir == tmp_path / "data"


def test_pyproject_tool_table_is_a_marker_and_the_data_folder_is_the_users(tmp_path, monkeypatch, no_folder_env):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_project(tmp_path) is None  # a pyproject.toml without [tool.copydesk] is no marker
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.copydesk]\n')
    spec = tmp_path / "pipelines" / "a.yaml"
    spec.parent.mkdir()
    spec.write_text("name: a\n")
    project = find_project(spec)
    assert project is not None and project.root == tmp_path and project.folders == {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = Settings()
    assert settings.languagetool_dir == tmp_path / "home" / ".local" / "share" / "copydesk" / "languagetool"


def test_a_bad_marker_is_named(tmp_path, monkeypatch, no_folder_env):
    (tmp_path / "copydesk.toml").write_text('output = "x"\n')
    with pytest.raises(ProjectError, match=r"copydesk\.toml: unknown setting\(s\) output"):
        find_project(tmp_path)
    (tmp_path / "copydesk.toml").write_text("output_dir = \n")
    with pytest.raises(ProjectError, match=r"copydesk\.toml: not a readable TOML file"):
        find_project(tmp_path)


def test_commands_keep_state_in_the_specs_project(tmp_path, no_folder_env):
    """`copydesk run` from elsewhere: the spec's project, not the current folder, holds the state."""
    init_project(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k not in FOLDER_ENV}
    code = ("import os, sys; from copydesk.project import adopt_project_of; from copydesk.settings import Settings; "
            "adopt_project_of(__import__('pathlib').Path(sys.argv[1])); s = Settings(); "
            "print(os.environ['COPYDESK_PROJECT_DIR']); print(s.state_dir); print(s.output_dir)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site" / "pipelines" / "tech-blog.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    site = tmp_path / "site"
    assert done.stdout.split() == [str(site), str(site / ".copydesk"), str(site / "outputs")]


def test_this_checkout_is_a_project():
    project = find_project(ROOT / "pipelines" / "tech-blog.yaml")
    assert project is not None and project.root == ROOT
    assert project.folders == {"languagetool_dir": ROOT / "vendor" / "languagetool"}


# --------------------------------------------------------------------------- copydesk init


def test_init_writes_a_project_and_never_overwrites(tmp_path):
    written = init_project(tmp_path / "site")
    site = tmp_path / "site"
    for name in ("pipelines/tech-blog.yaml", "pipelines/zh-tech-blog.yaml", "prompts/en/section.j2",
                 "prompts/zh/system.j2", "outputs/.gitkeep", "prefect.yaml", ".gitignore", "README.md",
                 "copydesk.toml"):
        assert name in written and (site / name).is_file(), name
    assert (site / "pipelines" / "tech-blog.yaml").read_bytes() == (ROOT / "pipelines" / "tech-blog.yaml").read_bytes()
    assert "outputs/*" in (site / ".gitignore").read_text() and ".copydesk/" in (site / ".gitignore").read_text()
    assert "entrypoint: copydesk_flows.editor:editor" in (site / "prefect.yaml").read_text()
    assert "copydesk setup" in (site / "README.md").read_text()

    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("mine")
    with pytest.raises(ProjectError, match=r"would overwrite README\.md; nothing was written"):
        init_project(other)
    assert [p.name for p in other.iterdir()] == ["README.md"] and (other / "README.md").read_text() == "mine"


# --------------------------------------------------------------------------- copydesk setup's downloads

LOCK = """languagetool-version 9.9
org.example:one:1.0 {sha_one} {size_one}
org.example.deep:two:2.0 {sha_two} {size_two}
"""
ONE, TWO = os.urandom(300_000), b"second jar"


def _lock() -> object:
    return read_lock(LOCK.format(sha_one=hashlib.sha1(ONE).hexdigest(), size_one=len(ONE),
                                 sha_two=hashlib.sha1(TWO).hexdigest(), size_two=len(TWO)))


@pytest.fixture
def maven() -> Iterator[tuple[str, list[str]]]:
    """A Maven repository over HTTP that honours Range and cuts the first answer of one.jar short."""
    files = {"/org/example/one/1.0/one-1.0.jar": ONE, "/org/example/deep/two/2.0/two-2.0.jar": TWO}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            data = files.get(self.path)
            seen.append(f"{self.path} {self.headers.get('Range')}")
            if data is None:
                self.send_error(404)
                return
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if len(seen) == 1:  # the first answer stops half-way: the download resumes
                self.wfile.write(data[start:start + 100_000])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_setup_downloads_resumes_checks_and_then_does_nothing(tmp_path, maven):
    url, seen = maven
    lock = _lock()
    dest = tmp_path / "jars"
    dest.mkdir()
    (dest / "stale-0.1.jar").write_bytes(b"old")
    fetched = fetch_languagetool(dest, url, lock)  # type: ignore[arg-type]
    assert [jar.filename for jar in fetched] == ["one-1.0.jar", "two-2.0.jar"]
    assert (dest / "one-1.0.jar").read_bytes() == ONE and (dest / "two-2.0.jar").read_bytes() == TWO
    assert "/org/example/one/1.0/one-1.0.jar bytes=100000-" in seen  # resumed where it was cut
    assert sorted(p.name for p in dest.iterdir()) == [STAMP, "one-1.0.jar", "two-2.0.jar"]
    assert up_to_date(dest, lock)  # type: ignore[arg-type]
    requests = len(seen)
    assert fetch_languagetool(dest, url, lock) == []  # type: ignore[arg-type]
    assert len(seen) == requests

    (dest / "two-2.0.jar").write_bytes(b"second jaR")  # same size, other bytes: --force finds it
    assert fetch_languagetool(dest, url, lock) == []  # type: ignore[arg-type]
    assert [jar.filename for jar in fetch_languagetool(dest, url, lock, force=True)] == ["two-2.0.jar"]  # type: ignore[arg-type]
    assert (dest / "two-2.0.jar").read_bytes() == TWO


def test_setup_refuses_a_jar_that_does_not_match_the_lock(tmp_path):
    mirror = tmp_path / "mirror"
    for path, data in (("org/example/one/1.0/one-1.0.jar", ONE), ("org/example/deep/two/2.0/two-2.0.jar", b"tampered!!")):
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    dest = tmp_path / "jars"
    with pytest.raises(ServiceError, match=r"two-2\.0\.jar: the file does not match the lock's size and SHA-1"):
        fetch_languagetool(dest, mirror.as_uri(), _lock())  # type: ignore[arg-type]
    assert not (dest / "two-2.0.jar").exists() and not (dest / STAMP).exists()
    assert (dest / "one-1.0.jar").read_bytes() == ONE  # kept: the next call only fetches the rest


def test_the_shipped_lock_is_the_poms_languagetool():
    lock = read_lock()
    names = {jar.filename for jar in lock.jars}
    assert f"languagetool-server-{lock.version}.jar" in names and f"language-zh-{lock.version}.jar" in names
    assert not any(name.startswith("language-all") for name in names)
    pom = (ROOT / "scripts" / "languagetool" / "pom.xml").read_text()
    assert f"<languagetool.version>{lock.version}</languagetool.version>" in pom


def test_run_without_languagetool_names_copydesk_setup(basic_spec, cli_env, tmp_path):
    """What a wheel's user sees before `copydesk setup`: the command to run, no script of a checkout."""
    from conftest import run_cli

    basic_spec.write_text(basic_spec.read_text().replace("grammar:\n    enabled: false", "grammar:\n    enabled: true"))
    assert "enabled: true" in basic_spec.read_text()
    env = {**cli_env, "COPYDESK_LANGUAGETOOL_DIR": str(tmp_path / "no-jars-yet")}
    result = run_cli(["run", str(basic_spec), "--out", str(tmp_path / "out"), "-t", "Rust lifetimes"], env)
    said = result.stdout + result.stderr
    assert "copydesk setup" in said, said
    assert "scripts/" not in said
