"""The embedded servers copydesk starts itself: LanguageTool and the local model.

    process       ManagedServer: a subprocess server on a 127.0.0.1 port (free, or
                  fixed), with `child_environment()` (never the API key),
                  health-checked, stopped with SIGTERM then SIGKILL; a state file
                  under settings.state_dir lets `copydesk services start` (and
                  `copydesk server start`) leave one running for later processes;
                  ServerLease: `with` a server's URL, started for the block if needed.
    environment   child_environment(): the minimal environment of every child (no
                  secret: no API key, no Prefect auth string or database URL)
    languagetool  LanguageToolServer and `languagetool_url(settings)`.
    llama         LlamaServer (llama.cpp's OpenAI-compatible server with
                  SmolLM2) and `local_model_endpoint(settings)`.
    manager       start_services / stop_services / services_status for the CLI.

Every failure is a `copydesk.errors.ServiceError` whose message says what to
run to fix it. Nothing here imports Prefect.
"""

from __future__ import annotations

from copydesk.services.environment import child_environment
from copydesk.services.lease import ServerLease
from copydesk.services.process import ManagedServer, ServerState, find_running

__all__ = ["ManagedServer", "ServerLease", "ServerState", "child_environment", "find_running"]
