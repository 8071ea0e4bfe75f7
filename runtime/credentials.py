"""Temporal's credentials (CA, client certificate, API key), read from the files the settings
name; shared by the gRPC client and the HTTP visibility reader, and passed nowhere else."""

from __future__ import annotations

from pathlib import Path

from flotilla.settings import SettingsError, TemporalSettings


def read_setting_file(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise SettingsError(f"{variable}={str(path)!r} cannot be read: {err.strerror}") from None


def read_api_key(settings: TemporalSettings) -> str | None:
    if settings.api_key_file is None:
        return None
    key = read_setting_file(settings.api_key_file, "TEMPORAL_API_KEY_FILE").decode().strip()
    if not key:
        raise SettingsError(f"TEMPORAL_API_KEY_FILE={str(settings.api_key_file)!r} is empty")
    return key
