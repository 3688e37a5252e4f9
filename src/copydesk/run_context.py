"""What one started run hands its articles and its report: a frozen `RunContext`.

`copydesk.runner.PipelineRun.start()` builds it once the run's resources are open; the
article pipeline (copydesk.article_pipeline) and the run's report (copydesk.run_report)
read it and never the run object, so neither can change the run's lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from copydesk.budget import TokenBudget
from copydesk.pricing import Price
from copydesk.prompts import PromptLibrary
from copydesk.resources import RunResources
from copydesk.settings import Settings
from copydesk.spec import PipelineSpec


@dataclass(frozen=True)
class RunContext:
    """A started run, as its articles and its report see it."""

    spec: PipelineSpec
    settings: Settings
    prompts: PromptLibrary
    run_id: str
    run_dir: Path
    #: The run's token budget (shared by every call; it counts, it is not replaced).
    budget: TokenBudget
    prices: dict[str, Price]
    #: The mode the run's calls use: realtime or batch (`auto` resolved by the preflight).
    mode: str
    #: The open resources (writer, gate, exporter, metrics, gateway); valid while the run is open.
    resources: RunResources
