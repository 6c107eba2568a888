from __future__ import annotations

import pytest

from vms.config import ConfigError, load_settings


def test_defaults_are_embedded() -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite:///")
    assert s.objects.backend == "local"
    assert s.sip.port == 5060 and s.server.port == 8000


def test_env_overrides_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMS_SIP__PORT", "5070")
    monkeypatch.setenv("VMS_DATABASE__URL", "postgresql+psycopg://u@127.0.0.1/x")
    s = load_settings()
    assert s.sip.port == 5070
    assert s.database_url == "postgresql+psycopg://u@127.0.0.1/x"


def test_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "vms.toml"
    cfg.write_text('[sip]\nserver_id = "37010200002000000001"\ndomain = "3701020000"\n')
    monkeypatch.setenv("VMS_CONFIG", str(cfg))
    s = load_settings()
    assert s.sip.server_id == "37010200002000000001"


def test_env_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "vms.toml"
    cfg.write_text("[server]\nport = 9001\n")
    monkeypatch.setenv("VMS_CONFIG", str(cfg))
    monkeypatch.setenv("VMS_SERVER__PORT", "9002")
    assert load_settings().server.port == 9002


@pytest.mark.parametrize(
    ("env", "value", "name"),
    [
        ("VMS_SIP__PORT", "seventy", "sip.port"),
        ("VMS_SIP__SERVER_ID", "123", "sip.server_id"),
        ("VMS_MEDIA__RTP_PORT_MIN", "40000", "media"),
        ("VMS_OBJECTS__BACKEND", "ftp", "objects.backend"),
    ],
)
def test_invalid_value_gives_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, name: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert name in message


def test_unknown_toml_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "vms.toml"
    cfg.write_text("[sip]\nprot = 1\n")
    monkeypatch.setenv("VMS_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="sip.prot"):
        load_settings()
