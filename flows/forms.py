"""The pipelines' own editor flows, by name: `copydesk_flows.forms.<name>`.

Each attribute named like a pipeline (`tech-blog`) is that pipeline's `copydesk-editor` flow,
made on first use (`copydesk_flows.editor.pipeline_flow`): its parameter schema is the
pipeline's own form, read from the pipelines folder. It is the entrypoint of every pipeline's
own deployment, `copydesk-editor/<name>`:

    copydesk serve            copydesk_flows.forms.tech-blog (a module path)
    prefect.yaml              entrypoint: copydesk_flows.forms:tech-blog (flows/forms.py:tech-blog
                              in copydesk's own checkout); `prefect deploy` takes the form from it

No `from __future__` import and only private names here: every public name would hide the
pipeline of that name.
"""

import re as _re
from typing import Any as _Any

from copydesk.spec import NAME_PATTERN as _NAME_PATTERN
from copydesk_flows.editor import pipeline_flow as _pipeline_flow


def __getattr__(name: str) -> _Any:
    if not _re.fullmatch(_NAME_PATTERN, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _pipeline_flow(name)
