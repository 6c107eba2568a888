"""Pixels to meaning: detectors (ONNX Runtime), rules per alarm type, alarm/clear state."""
