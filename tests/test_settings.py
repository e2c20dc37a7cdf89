"""One settings object reads the environment; the layers below get values passed to them."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from autointerp.cli.options import db_option
from autointerp.settings import DEFAULT_DB, get_settings
from storage.core.db import resolve_url


def test_settings_read_the_environment_when_asked(monkeypatch, tmp_path):
    for name in ("AUTOINTERP_DB", "AUTOINTERP_API_TOKEN", "OPENAI_BASE_URL", "AUTOINTERP_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    defaults = get_settings()
    assert defaults.database_url == DEFAULT_DB and defaults.api_token is None and defaults.openai_base_url is None
    assert defaults.cache_dir == Path("~/.cache/autointerp").expanduser() and not defaults.offline

    monkeypatch.setenv("AUTOINTERP_DB", "runs.db")
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", "s3cret")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = get_settings()
    assert settings.database_url == "runs.db" and settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.cache_dir == tmp_path / "autointerp" and settings.offline
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())

    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "here"))
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", "")  # empty means unset: the server stays read-only
    settings = get_settings()
    assert settings.cache_dir == tmp_path / "here" and settings.api_token is None


def test_every_command_gets_a_database_url(monkeypatch):
    @click.command()
    @db_option
    def show(db_url: str) -> None:
        click.echo(db_url)

    monkeypatch.delenv("AUTOINTERP_DB", raising=False)
    assert CliRunner().invoke(show, []).output.strip() == DEFAULT_DB
    monkeypatch.setenv("AUTOINTERP_DB", "postgresql://u@h/db")
    assert CliRunner().invoke(show, []).output.strip() == "postgresql://u@h/db"
    assert CliRunner().invoke(show, ["--db", "x.db"]).output.strip() == "x.db"


def test_resolve_url():
    assert resolve_url("x.db") == "sqlite:///x.db"
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("sqlite:///:memory:") == "sqlite:///:memory:"
