"""WebRTC live view: the hub's H.264 and G.711 audio forwarded to browsers without re-encoding."""
