"""The embedded servers copydesk starts itself: LanguageTool and the local model.

    process       ManagedServer: a subprocess server on a free 127.0.0.1 port,
                  health-checked, stopped with SIGTERM then SIGKILL; a state file
                  under settings.state_dir lets `copydesk services start` leave
                  one running for later processes to reuse.
    languagetool  LanguageToolServer and `languagetool_url(settings)`.
    llama         LlamaServer (llama.cpp's OpenAI-compatible server with
                  SmolLM2) and `local_model_endpoint(settings)`.
    manager       start_services / stop_services / services_status for the CLI.

Every failure is a `copydesk.errors.ServiceError` whose message says what to
run to fix it. Nothing here imports Prefect.
"""

from __future__ import annotations

from copydesk.services.process import ManagedServer, ServerState, find_running

__all__ = ["ManagedServer", "ServerState", "find_running"]
