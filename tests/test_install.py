"""The release as a content team gets it (issue 22's proof).

`python -m build` makes an sdist and a wheel of this checkout (`twine check` passes);
the wheel goes into a fresh virtualenv in a temporary folder, without its
dependencies: the virtualenv reaches the already installed ones through a path line
(not as a site folder, so the checkout's editable install is not seen). Then, from a
folder outside the checkout: `copydesk init site`, `copydesk setup` against a local
Maven mirror made from the checkout's jars, `validate`, `plan` and `run` against the
fake API with the real LanguageTool. Nothing may be written under the virtualenv's
lib/ after the installation.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SECRET_KEY
from fake_openai import SENTENCES, FakeOpenAI

from copydesk.provision import read_lock

JARS = ROOT / "vendor" / "languagetool"


def _sh(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


HEADINGS = ("Why it matters", "How it works", "Common mistakes", "Next steps")


def example_reply(body: dict[str, object]) -> str:
    """Answers to the English example's prompts (prompts/en): headline, headings, two paragraphs."""
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))  # type: ignore[union-attr]
    if "Write one short sentence that says what this blog post is about" in prompt:  # the description extra
        return "A practical guide for working developers."
    if "Give three keywords" in prompt:  # the tags extra
        return '{"items": ["python", "testing", "guides"]}' if body.get("response_format") else "python, testing"
    if "section headings" in prompt:
        return "\n".join(f"{n}. {heading}" for n, heading in enumerate(HEADINGS, 1))
    topic = re.search(r"blog post about (.+?)(?:\.| for )", prompt)
    subject = topic.group(1) if topic else "this topic"
    if "headline" in prompt:
        return f"{subject}: A Practical Guide"
    index = next(n for n, heading in enumerate(HEADINGS) if f'"{heading}"' in prompt)
    picks = SENTENCES[index * 7:index * 7 + 7]  # no sentence in two sections
    lead = f"This part is about {HEADINGS[index].lower()} in {subject.lower()}."
    return " ".join([lead, *picks[:3]]) + "\n\n" + " ".join(picks[3:])


def _build(dist: Path) -> tuple[Path, str]:
    """sdist and wheel of the checkout; both pass `twine check`; the wheel holds only the package."""
    _sh([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], cwd=dist.parent)
    (wheel,) = dist.glob("copydesk-*.whl")
    (sdist,) = dist.glob("copydesk-*.tar.gz")
    _sh([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], cwd=dist.parent)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"copydesk", "copydesk_flows", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert not [n for n in names if "/tests/" in n or "bench" in n or "vendor" in n or n.endswith(".jar")]
    assert "copydesk/examples/pipelines/zh-tech-blog.yaml" in names and "copydesk/languagetool.lock" in names
    metadata = zipfile.ZipFile(wheel).read(wheel.name.split("-py3")[0] + ".dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "Classifier: " in metadata
    assert "copydesk/copydesk" not in metadata  # no placeholder address (pyproject has no URLs until a real one exists)
    return wheel, metadata


def _venv(folder: Path, wheel: Path) -> Path:
    """A fresh virtualenv with the wheel (no deps); the installed dependencies through a path line."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-q", str(wheel)], cwd=folder)
    purelib = Path(_sh([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       cwd=folder).strip())
    # a plain path line: the dependencies' folder is searched, its .pth files (the
    # checkout's editable install among them) are not read
    (purelib / "zz-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() or p.is_dir()}


def _mirror(folder: Path) -> str:
    """A file:// Maven repository made of links to the checkout's jars."""
    for jar in read_lock().jars:
        target = folder / jar.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(JARS / jar.filename)
    return folder.as_uri()


@pytest.mark.integration
def test_the_wheel_in_a_fresh_virtualenv_makes_and_runs_a_project(tmp_path, prefect_server):
    assert (JARS / "languagetool-server-6.8.jar").is_file(), "run scripts/setup.sh first (the jars in vendor/)"
    wheel, metadata = _build(tmp_path / "dist")
    venv = _venv(tmp_path / "venv", wheel)
    before = _snapshot(venv / "lib")
    work, data = tmp_path / "work", tmp_path / "user-data"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_", "PYTHON"))}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", COPYDESK_DATA_DIR=str(data), COLUMNS="200",
               COPYDESK_MAVEN_URL=_mirror(tmp_path / "mirror"), PREFECT_API_URL=prefect_server,
               COPYDESK_LANGUAGETOOL_WARMUP_WORDS="0")
    copydesk = str(venv / "bin" / "copydesk")

    where = _sh([str(venv / "bin" / "python"), "-c", "import copydesk, copydesk_flows; "
                 "print(copydesk.__file__, copydesk_flows.__file__)"], cwd=work, env=env)
    assert str(ROOT) not in where and where.count(str(venv / "lib")) == 2, where

    version = metadata.split("\nVersion: ")[1].split("\n")[0]
    assert _sh([copydesk, "--version"], cwd=work, env=env).strip() == f"copydesk {version}"
    assert "copydesk setup" in _sh([copydesk, "init", "site"], cwd=work, env=env)
    site_dir = work / "site"
    assert (site_dir / "copydesk.toml").is_file() and (site_dir / "pipelines" / "zh-tech-blog.yaml").is_file()
    again = subprocess.run([copydesk, "init", "site"], cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "would overwrite" in again.stderr

    setup = _sh([copydesk, "setup"], cwd=site_dir, env=env)
    assert "downloaded 135 jar(s)" in setup and "ready" in setup, setup
    assert len(list((data / "languagetool").glob("*.jar"))) == len(read_lock().jars)
    assert "up to date" in _sh([copydesk, "setup"], cwd=site_dir, env=env)

    spec = "pipelines/tech-blog.yaml"
    topics = ["--topic", "Writing readable Python functions"]
    assert "valid" in _sh([copydesk, "validate", spec, "pipelines/zh-tech-blog.yaml"], cwd=site_dir, env=env)
    assert "plan: tech-blog, 1 topic(s)" in _sh([copydesk, "plan", spec, *topics], cwd=site_dir, env=env)
    with FakeOpenAI(reply=example_reply) as fake:
        run_env = {**env, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": SECRET_KEY}
        try:
            _sh([copydesk, "run", spec, *topics], cwd=site_dir, env=run_env)
            # the kept LanguageTool's record is the project's; its classpath the user data folder's jars
            state = json.loads((site_dir / ".copydesk" / "languagetool.json").read_text())
            assert str(data / "languagetool" / "*") in state["command"], state["command"]
            assert Path(state["log_path"]).is_relative_to(site_dir / ".copydesk")
        finally:
            _sh([copydesk, "services", "stop"], cwd=site_dir, env=run_env)

    (run_dir,) = [p for p in (site_dir / "outputs").iterdir() if p.is_dir()]
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert list(frame["status"]) == ["published"], frame[["status", "reasons"]]
    report = json.loads((run_dir / "qc_report.json").read_text())
    for article in report["articles"]:
        (grammar,) = [check for check in article["qc"]["checks"] if check["name"] == "grammar"]
        assert grammar["ran"] and grammar["passed"], grammar
    assert _snapshot(venv / "lib") == before, "something was written inside the virtualenv"
