"""Build hook: a wheel installs the repository's `flows/` folder as the package `copydesk_flows`.

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


class FlowsPackageHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        for source in sorted((Path(self.root) / "flows").glob("*.py")):
            build_data["force_include"][str(source)] = f"copydesk_flows/{source.name}"
