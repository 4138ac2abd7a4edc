"""Secrets in the settings: the STAC transactions key from the environment or from a file
(a Docker or Kubernetes secret), never shown, and writes closed without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from glacierflow.settings import Settings, SettingsError

KEY = "k3y-from-a-secret-file-0123"
NAME = "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY"


def test_writes_are_closed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.delenv(f"{NAME}_FILE", raising=False)
    assert Settings().transactions_key() is None


def test_the_key_is_read_from_the_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text(KEY + "\n")  # the line break editors and `echo` add
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.setenv(f"{NAME}_FILE", str(tmp_path / "key"))
    settings = Settings()
    assert settings.transactions_key() == KEY
    assert KEY not in repr(settings) + str(settings.model_dump())


def test_a_key_from_the_environment_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, KEY)
    settings = Settings()
    assert settings.transactions_key() == KEY
    assert KEY not in repr(settings) + str(settings.model_dump())


def _file_error(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings(stac_transactions_api_key_file=path).transactions_key()
    return str(caught.value)


def test_a_file_that_cannot_be_used_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    assert f"{NAME}_FILE" in _file_error(tmp_path / "missing")
    assert "No such file" in _file_error(tmp_path / "missing")
    assert "Is a directory" in _file_error(tmp_path)
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in _file_error(tmp_path / "empty")
    (tmp_path / "binary").write_bytes(b"\xff\xfe-not-text-at-all")
    assert "not UTF-8" in _file_error(tmp_path / "binary")


def test_a_short_key_in_a_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("hunter2\n")
    message = _file_error(tmp_path / "short")
    assert f"{NAME}_FILE" in message and "at least 16" in message
    assert "hunter2" not in message


def test_the_key_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY)
    settings = Settings(
        stac_transactions_api_key=KEY, stac_transactions_api_key_file=tmp_path / "key"
    )
    with pytest.raises(SettingsError, match="not both") as caught:
        settings.transactions_key()
    assert KEY not in str(caught.value)
