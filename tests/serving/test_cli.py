"""sam-server's flags and SAM_* environment variables."""

from __future__ import annotations

import pytest

from backend.serving.cli import bind_address, config_from_args


def test_defaults_are_demo_on_localhost_9090(monkeypatch):
    for name in ("SAM_MODEL", "SAM_HOST", "SAM_PORT", "SAM_TOKEN", "SAM_CACHE_MB", "SAM_NO_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    config = config_from_args([])
    assert (config.model, config.host, config.port, config.token, config.plugins) == (
        "demo",
        "127.0.0.1",
        9090,
        None,
        True,
    )


def test_environment_variables_fill_every_setting(monkeypatch):
    env = {
        "SAM_MODEL": "vit_b",
        "SAM_DEVICE": "cpu",
        "SAM_DTYPE": "bfloat16",
        "SAM_HOST": "0.0.0.0",
        "SAM_PORT": "8001",
        "SAM_TOKEN": "t0k",
        "SAM_CACHE_MB": "64",
        "SAM_MAX_PIXELS": "1000000",
        "SAM_LOG_LEVEL": "debug",
        "SAM_NO_PLUGINS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = config_from_args([])
    assert (config.model, config.device, config.dtype, config.host, config.port) == (
        "vit_b",
        "cpu",
        "bfloat16",
        "0.0.0.0",
        8001,
    )
    assert (config.token, config.cache_mb, config.max_pixels, config.log_level, config.plugins) == (
        "t0k",
        64,
        1_000_000,
        "DEBUG",
        False,
    )


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("SAM_PORT", "8001")
    monkeypatch.setenv("SAM_MODEL", "vit_b")
    config = config_from_args(
        ["--port", "9999", "--model", "/tmp/x.pt", "--cache-mb", "10", "--no-plugins", "--max-batch", "1"]
    )
    assert (config.port, config.model, config.cache_mb, config.plugins, config.max_batch) == (
        9999,
        "/tmp/x.pt",
        10,
        False,
        1,
    )


def test_bad_flag_values_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        config_from_args(["--dtype", "int8"])
    assert "invalid choice" in capsys.readouterr().err


def test_bind_address_brackets_ipv6():
    assert bind_address("127.0.0.1", 9090) == "127.0.0.1:9090"
    assert bind_address("::1", 9090) == "[::1]:9090"
