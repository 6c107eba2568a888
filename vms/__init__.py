"""The application: configuration, CLI, media, recording, uplink and their wiring."""

__version__ = "0.1.0"
