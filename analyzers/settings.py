"""The analyzer pool's own settings section.

It lives here, not in ``vms.config``, so an analyzer host imports ``analyzers`` without the
rest of the node: ``vms.config.Settings`` embeds this section as ``analyzers``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AnalyzerSettings(BaseModel):
    """Analyzer pool."""

    model_config = ConfigDict(extra="forbid")  # unknown keys are errors, as in every section

    enabled: bool = True
    workers: int = Field(1, ge=1)
    providers: list[str] = []  # empty → best available (TensorRT, CUDA, CPU)
    precision: Literal["auto", "fp32", "int8", "fp16"] = "auto"  # model file; auto → by provider
    device_id: int = Field(0, ge=0)  # GPU used by the CUDA / TensorRT providers
    models_dir: Path | None = None  # empty → server.data_dir/models
    # DEVICE_CODE in Tables 2-4 for sites without their own (a node serving one site);
    # empty → per site, unique to this install (vms.uplink.identity)
    device_code: str = Field("", max_length=36, pattern=r"^[\x21-\x7e]*$")
    threads: int = Field(1, ge=1)  # onnxruntime intra-op threads per worker process
    ring_slots: int = Field(8, ge=2, le=64)  # shared-memory frame slots per worker (1080p each)
    queue_size: int = Field(64, ge=4)  # access units waiting per worker before dropping
