"""The walk of one article through a real run (fake API, the basic spec's checks): its path
through copydesk's modules, as ARCHITECTURE.md draws it ("One article's path").

How the walk is taken. A profiler (`sys.setprofile`) sees every call of a Python function
defined in a copydesk module while the run processes its one article; a coroutine resumed
after an `await` is not a call. Each call gets its module path: the copydesk modules on its
stack from `PipelineRun.process` down (a module calling itself is one step; the first frame
of an asyncio task continues the path of the frame that created its coroutine; the profiler
watches the event loop's thread: the gate's editorial pass and grammar check, run in worker
threads, are inside the gate anyway). The walk is
structural: it follows the article to the modules its owner, `ArticlePipeline.process`,
hands it to, and stops there (what the writer, the gate and the exporter do inside is theirs).
Read in call order, the paths make moves between modules:

    enters    a move down from one copydesk module into another (the callee's module)
    climbs    a move back up to the module that made the call

Consecutive calls from one module into the same module are one entry. Figures when this
test was written (one article, published, no repair): before the article pipeline, whose
owner was `copydesk.runner`, 9 modules entered 11 times (`copydesk.article` and
`copydesk.qc.gate` twice each) and 10 climbs back to the runner; after, 9 modules entered
once each (the runner hands over once) and 7 climbs back to the pipeline, none to the runner.
"""

from __future__ import annotations

import asyncio
import dis
import functools
import sys
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from fake_openai import FakeOpenAI

import copydesk
from copydesk.orchestration import run_batch
from copydesk.request import RunRequest
from copydesk.settings import Settings

PACKAGE = Path(copydesk.__file__).resolve().parent
ROOT = ("copydesk.runner", "process")  # PipelineRun.process: where a run hands over one article
OWNER = "copydesk.article_pipeline"  # ArticlePipeline.process: the article's owner
GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR


@functools.lru_cache(maxsize=None)
def module_of(filename: str) -> str | None:
    """The copydesk module defined in `filename`, or None (not copydesk's, or generated code)."""
    try:
        relative = Path(filename).resolve().relative_to(PACKAGE)
    except ValueError:
        return None
    parts = relative.with_suffix("").parts
    return ".".join(("copydesk", *(parts[:-1] if parts[-1] == "__init__" else parts)))


@functools.lru_cache(maxsize=None)
def first_resume(code: CodeType) -> int:
    return next(i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")


class Walk:
    """Every call on one article's walk, as its module path (see the module docstring)."""

    def __init__(self) -> None:
        self.paths: list[list[str]] = []
        self._task_paths: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or module_of(frame.f_code.co_filename) is None:
            return
        if frame.f_code.co_flags & GENERATOR_FLAGS and frame.f_lasti > first_resume(frame.f_code):
            return  # a coroutine resumed, not called
        stack, outermost = [], frame
        f: FrameType | None = frame
        while f is not None:
            if (module := module_of(f.f_code.co_filename)) is not None:
                stack.append((module, f.f_code.co_name))
                outermost = f
            f = f.f_back
        stack.reverse()
        if ROOT not in stack:
            stack = self._task_origin(outermost, stack)
            if ROOT not in stack:
                return  # not this article's (the run's own start and end)
        path: list[str] = []
        for module, _ in stack[stack.index(ROOT):]:
            if not path or path[-1] != module:
                path.append(module)
        self.paths.append(path)

    def _task_origin(self, outermost: FrameType, stack: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The stack of a task's first frame continued by where its coroutine was created."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return stack
        coro = task.get_coro() if task is not None else None
        if coro is None or getattr(coro, "cr_frame", None) is not outermost:
            return stack
        origin = [(module_of(file), name) for file, _, name in reversed(coro.cr_origin or ())]
        origin = [(m, n) for m, n in origin if m is not None]
        if origin and ROOT not in origin:
            origin = self._task_paths.get(origin[0], []) + origin
        self._task_paths[stack[0]] = origin
        return origin + stack


def moves(paths: list[list[str]], below_owner: int = 1) -> tuple[list[str], Counter[str], int]:
    """The walk read in call order down to `below_owner` modules below the owner: the modules it
    is in, one after the other; how often each module is entered; how often it climbs back."""
    walk: list[str] = []
    entered: Counter[str] = Counter()
    climbs = 0
    here: list[str] = []
    for path in paths:
        depth = path.index(OWNER) + 1 + below_owner if OWNER in path else len(path)
        target = path[:depth]
        common = 0
        while common < min(len(here), len(target)) and here[common] == target[common]:
            common += 1
        while len(here) > common:
            here.pop()
            if here:
                climbs += 1
                walk.append(here[-1])
        while len(here) < len(target):
            here.append(target[len(here)])
            if len(here) > 1:
                entered[here[-1]] += 1
            walk.append(here[-1])
    return walk, entered, climbs


async def walk_one_article(spec: Path, out: Path) -> tuple[Walk, Any]:
    walk = Walk()
    depth = sys.get_coroutine_origin_tracking_depth()
    sys.set_coroutine_origin_tracking_depth(100)
    try:
        with FakeOpenAI() as fake:
            sys.setprofile(walk.profile)
            try:
                summary = await run_batch(RunRequest(spec_path=str(spec), topics=["Testing data pipelines"],
                                                     out_dir=str(out)), Settings(OPENAI_BASE_URL=fake.url))
            finally:
                sys.setprofile(None)
    finally:
        sys.set_coroutine_origin_tracking_depth(depth)
    return walk, summary


async def test_one_article_walks_each_module_at_most_twice(basic_spec: Path, tmp_path: Path) -> None:
    walk, summary = await walk_one_article(basic_spec, tmp_path / "out")
    assert summary.by_status == {"published": 1}
    path, entered, climbs = moves(walk.paths)
    names = [module.removeprefix("copydesk.") for module in path]
    print(" > ".join(names), dict(entered), climbs, sep="\n")
    # the run hands the article over once and never sees it again: no climb back to the runner
    assert names[:2] == ["runner", "article_pipeline"] and names.count("runner") == 1
    assert max(entered.values()) <= 2, entered
    # the owner's path: write, check (the gate once, its edits applied, the report entry), export
    stages = [name for name in names if name not in ("runner", "article_pipeline")]
    assert stages == ["writer", "orchestration", "resources", "article", "qc.check", "qc.gate", "metrics", "slugs",
                      "export", "article"], stages
    assert climbs == len(stages) - 1  # every stage but the last returns to the owner, and only to it
    assert names[2::2] == stages and set(names[1::2]) == {"article_pipeline"}
