"""The service's environment variables in one place. Entry points (CLI commands, `create_app`) read them once
and pass the values down; the layers below `autointerp` never read the environment themselves (except
OPENAI_API_KEY, read by `llm_client` only when a call is made, so the key is never stored)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB = "sqlite:///autointerp.db"


class Settings(BaseSettings):
    # Variables keep their established names (no common prefix); an empty variable counts as unset.
    model_config = SettingsConfigDict(env_ignore_empty=True, populate_by_name=True, extra="ignore")

    database_url: str = Field(default=DEFAULT_DB, validation_alias="AUTOINTERP_DB",
                              description="Database URL or SQLite file path")
    api_token: SecretStr | None = Field(default=None, validation_alias="AUTOINTERP_API_TOKEN",
                                        description="Bearer token that enables the API's write endpoints")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL",
                                        description="OpenAI-compatible endpoint for openai: specs")
    cache: Path | None = Field(default=None, validation_alias="AUTOINTERP_CACHE",
                               description="Converted local models and the LLM response cache")
    xdg_cache_home: Path = Field(default=Path("~/.cache"), validation_alias="XDG_CACHE_HOME")
    hf_hub_offline: bool = Field(default=False, validation_alias="HF_HUB_OFFLINE")
    transformers_offline: bool = Field(default=False, validation_alias="TRANSFORMERS_OFFLINE")

    @property
    def cache_dir(self) -> Path:
        return (self.cache or self.xdg_cache_home / "autointerp").expanduser()

    @property
    def offline(self) -> bool:
        """Never reach for a model hub."""
        return self.hf_hub_offline or self.transformers_offline


def get_settings() -> Settings:
    """The environment as it is now. Not cached: each entry point calls this once, and tests change the
    environment between calls."""
    return Settings()
