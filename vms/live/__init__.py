"""WebRTC live view: the hub's H.264 forwarded to browsers without re-encoding."""
