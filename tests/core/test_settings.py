"""Settings: seed names, URL normalisation, secrets generated once into the data directory."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from tollgate.core.settings import Settings, load_or_generate_secrets, normalise_database_url

SECRET_NAMES = ("JWT_SECRET_KEY", "SECRET_KEY", "TOLLGATE_ENCRYPTION_KEYS", "DATABASE_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"TOLLGATE_{name}", raising=False)
    return monkeypatch


def test_seed_setting_names_are_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://u@h/db")
    clean_env.setenv("REDIS_URL", "redis://h:6379/0")
    clean_env.setenv("ACCESS_TOKEN_EXPIRE_MINUTES", "45")
    clean_env.setenv("JWT_SECRET_KEY", "x" * 40)
    clean_env.setenv("LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.redis_url == "redis://h:6379/0"
    assert settings.access_token_expire_minutes == 45
    assert settings.jwt_secret_key == "x" * 40
    assert settings.log_level == "DEBUG"


def test_tollgate_prefixed_names_are_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TOLLGATE_DATABASE_URL", "sqlite:///x.db")
    assert Settings().database_url == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:///a.db", "sqlite+aiosqlite:///a.db"),
    ],
)
def test_database_urls_get_async_drivers(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_default_database_is_sqlite_in_the_data_directory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}"


def test_first_start_generates_secrets_with_mode_0600_and_says_so_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    first = load_or_generate_secrets(Settings(data_dir=tmp_path))
    secrets_file = tmp_path / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert first.jwt_secret_key
    assert first.secret_key
    assert first.encryption_keys
    announcements = [r for r in caplog.records if "generated secrets" in r.getMessage()]
    assert len(announcements) == 1
    assert first.jwt_secret_key not in caplog.text

    caplog.clear()
    second = load_or_generate_secrets(Settings(data_dir=tmp_path))
    assert second.jwt_secret_key == first.jwt_secret_key
    assert second.encryption_keys == first.encryption_keys
    assert not [r for r in caplog.records if "generated secrets" in r.getMessage()]


def test_secrets_given_in_the_environment_are_not_generated(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("JWT_SECRET_KEY", "from-env-" + "x" * 32)
    settings = load_or_generate_secrets(Settings(data_dir=tmp_path))
    assert settings.jwt_secret_key == "from-env-" + "x" * 32


def test_unknown_credit_tier_falls_back_to_the_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TOLLGATE_CREDIT_TIERS", '{"free": {"monthly_allocation": 10}}')
    settings = Settings()
    assert settings.tier("gold").monthly_allocation == 10
