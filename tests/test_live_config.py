"""Live-view settings: bad values stop start-up with one line naming the setting."""

from __future__ import annotations

import pytest

from vms.config import ConfigError, load_settings


def test_defaults_offer_loopback_only() -> None:
    live = load_settings().live
    assert live.enabled and live.ice_addresses == ["127.0.0.1"] and live.stun_urls == []


@pytest.mark.parametrize(
    ("live", "message"),
    [
        ({"ice_addresses": ["0.0.0.0"]}, "live.ice_addresses"),
        ({"ice_addresses": ["camera.local"]}, "not an IP address"),
        ({"stun_urls": ["http://stun.example.org"]}, "stun: or stuns:"),
        ({"max_sessions": 0}, "live.max_sessions"),
        ({"max_sessions_per_user": 0}, "live.max_sessions_per_user"),
        ({"viewer_queue": 2}, "live.viewer_queue"),
    ],
)
def test_invalid_live_settings_are_named(live: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(live=live)


def test_env_overrides_live_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMS_LIVE__ICE_ADDRESSES", '["192.0.2.10", "::1"]')
    assert load_settings().live.ice_addresses == ["192.0.2.10", "::1"]
