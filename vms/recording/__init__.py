"""Continuous recording to the object store, its index, retention, and replay helpers."""
