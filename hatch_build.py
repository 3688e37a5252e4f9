"""Build hook: a wheel installs the repository's `flows/` folder as the package `copydesk_flows`,
and carries the repository's `pipelines/`, `prompts/` and `prefect.yaml` as the examples
`copydesk init` copies (`copydesk/examples/`; copydesk.scaffold reads them from the
checkout in editable installs). The repository keeps one copy of each.

The folder keeps its product name in the repository; installed, it takes copydesk's own
name instead of a generic top-level `flows`. Editable installs (and PYTHONPATH=src) need
nothing from this hook: they find `src/copydesk_flows`, a symbolic link to `flows/`.
(hatchling's `sources` cannot rename a folder in editable mode, and a `force-include`
would copy a stale snapshot into site-packages there.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXAMPLE_FOLDERS = ("pipelines", "prompts")


class FlowsPackageHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        root = Path(self.root)
        for source in sorted((root / "flows").glob("*.py")):
            build_data["force_include"][str(source)] = f"copydesk_flows/{source.name}"
        for folder in EXAMPLE_FOLDERS:
            for source in sorted((root / folder).rglob("*")):
                if source.is_file() and "__pycache__" not in source.parts:
                    build_data["force_include"][str(source)] = f"copydesk/examples/{source.relative_to(root).as_posix()}"
        build_data["force_include"][str(root / "prefect.yaml")] = "copydesk/examples/prefect.yaml"
