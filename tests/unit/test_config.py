"""Settings from the CHAT_* environment, and the instance folder's secret key."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from chat import create_app
from chat.config import ConfigError, instance_secret_key, load_settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_COOKIE_SECURE", "maybe"),
        ("CHAT_DATABASE_URL", "mysql://x"),
        ("CHAT_BROKER_URL", "amqp://localhost"),
        ("CHAT_ALLOWED_ORIGINS", "chat.example.org"),
        ("CHAT_MIGRATE", "sometimes"),
        ("CHAT_MAX_BODY_BYTES", "lots"),
        ("CHAT_BCRYPT_ROUNDS", "3"),
        ("CHAT_HASH_QUEUE", "-1"),
    ],
)
def test_a_wrong_value_names_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert name in str(caught.value)


def test_a_wrong_database_url_is_not_echoed():
    with pytest.raises(ConfigError, match="CHAT_DATABASE_URL") as caught:
        load_settings({"CHAT_DATABASE_URL": "mysql://chat:hunter2secret@db/chat"})
    assert "hunter2secret" not in str(caught.value)


def test_create_app_refuses_a_wrong_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAT_COOKIE_SECURE", "maybe")
    with pytest.raises(ConfigError, match="CHAT_COOKIE_SECURE"):
        create_app(instance_path=tmp_path)


def test_a_wrong_override_names_create_app(tmp_path):
    with pytest.raises(ConfigError, match=r"create_app\(bcrypt_rounds=...\)"):
        create_app(instance_path=tmp_path, bcrypt_rounds=99)
    with pytest.raises(ConfigError, match="no_such_setting"):
        create_app(instance_path=tmp_path, no_such_setting=1)


def test_environment_values_are_parsed():
    settings = load_settings(
        {
            "CHAT_COOKIE_SECURE": "false",
            "CHAT_MIGRATE": "0",
            "CHAT_ALLOWED_ORIGINS": "https://A.example.org/, http://localhost:3000,",
            "CHAT_DATABASE_URL": "postgres://chat:pw@db:5432/chat",
            "CHAT_BCRYPT_ROUNDS": "13",
            "CHAT_SECRET_KEY": "",  # empty counts as unset
        }
    )
    assert settings.cookie_secure is False and settings.migrate is False
    assert settings.allowed_origins == ("https://a.example.org", "http://localhost:3000")
    assert settings.is_postgres and settings.sqlite_path is None
    assert settings.bcrypt_rounds == 13 and settings.secret_key is None


def test_defaults(tmp_path):
    settings = load_settings({"CHAT_INSTANCE_PATH": str(tmp_path)})
    assert settings.cookie_secure is True and settings.migrate is True
    assert settings.broker_url == "memory://" and settings.allowed_origins == ()
    assert settings.sqlite_path == tmp_path.resolve() / "chat.sqlite3"
    assert settings.bcrypt_rounds == 12


def test_overrides_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAT_COOKIE_SECURE", "true")
    app = create_app(instance_path=tmp_path, cookie_secure=False)
    assert app.extensions["chat"].settings.cookie_secure is False
    assert app.config["QUART_AUTH_COOKIE_SECURE"] is False


def test_the_secret_key_is_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAT_SECRET_KEY", raising=False)
    first = create_app(instance_path=tmp_path / "instance")
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32 and key_file.read_text().strip() == first.secret_key
    second = create_app(instance_path=tmp_path / "instance")
    assert second.secret_key == first.secret_key


def test_a_configured_secret_key_writes_no_file(tmp_path):
    app = create_app(instance_path=tmp_path / "instance", secret_key="configured-elsewhere")
    assert app.secret_key == "configured-elsewhere"
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_concurrent_first_starts_agree_on_one_key(tmp_path):
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(instance_secret_key(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_an_empty_key_file_is_an_error_not_an_empty_key(tmp_path):
    (tmp_path / "secret_key").write_text("")
    os.chmod(tmp_path / "secret_key", 0o600)
    with pytest.raises(ConfigError, match="secret_key"):
        instance_secret_key(tmp_path)
