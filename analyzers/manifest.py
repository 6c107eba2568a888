"""Model manifests (``models/*.toml`` and user models in the cache) and the build lock file.

The lock (``models.lock.json`` in the models cache) records each built ONNX file's sha256, so
the server loads only files it can verify and ``make models`` can skip work already done.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .detector import ClassMap
from .providers import PRECISIONS

REPO_MANIFESTS = Path(__file__).resolve().parent.parent / "models"
LOCK_NAME = "models.lock.json"
USER_DIR = "user"  # user models live in <cache>/user/<name>.toml + .onnx


class ManifestError(ValueError):
    """A manifest is malformed; the message names the file and the field."""


class ModelMissing(FileNotFoundError):
    """A model the config needs is not built or fails its checksum."""


@dataclass(frozen=True)
class ClassSpec:
    name: str
    label: str
    rules: list[str] = field(default_factory=list)
    hint: str = ""
    min_score: float = 0.0  # this class needs at least this score (the model's false alarms)


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    licence: str
    classes: list[ClassSpec]
    sizes: list[int]
    dynamic_batch: bool
    source: dict[str, Any]
    path: Path
    precisions: list[str] = field(default_factory=lambda: ["fp32"])  # files built per size

    @property
    def user(self) -> bool:
        return self.source.get("kind") == "user"

    def onnx_name(self, size: int, precision: str = "fp32") -> str:
        if self.user:
            return f"{self.name}.onnx"
        tail = "" if precision == "fp32" else f".{precision}"
        return f"{self.name}-{size}{tail}.onnx"

    def class_map(self) -> ClassMap:
        return ClassMap(
            [c.name for c in self.classes],
            [c.label for c in self.classes],
            [c.hint for c in self.classes],
            [c.min_score for c in self.classes] if any(c.min_score for c in self.classes) else None,
        )

    def labels(self) -> set[str]:
        return {c.label for c in self.classes}


def parse_manifest(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    try:
        classes = [
            ClassSpec(
                name=str(c["name"]),
                label=str(c.get("label") or c["name"]),
                rules=[str(r) for r in c.get("rules", [])],
                hint=str(c.get("hint", "")),
                min_score=float(c.get("min_score", 0.0)),
            )
            for c in data["classes"]
        ]
        source = dict(data["source"])
        if source.get("kind") not in ("package", "user"):
            raise ManifestError(f"{path}: source.kind must be 'package' or 'user'")
        precisions = [str(p) for p in data.get("precisions", ["fp32"])]
        if "fp32" not in precisions or not set(precisions) <= set(PRECISIONS):
            raise ManifestError(
                f"{path}: precisions must include fp32 and be among {list(PRECISIONS)}"
            )
        return Manifest(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            licence=str(data.get("licence", "unknown")),
            classes=classes,
            sizes=[int(s) for s in data.get("sizes", [640])],
            dynamic_batch=bool(data.get("dynamic_batch", False)),
            source=source,
            path=path,
            precisions=precisions if source["kind"] == "package" else ["fp32"],
        )
    except KeyError as exc:
        raise ManifestError(f"{path}: missing field {exc.args[0]!r}") from None


def all_manifests(cache: Path, repo_dir: Path = REPO_MANIFESTS) -> list[Manifest]:
    """Shipped manifests first, then user models registered in the cache."""
    files = sorted(repo_dir.glob("*.toml")) + sorted((cache / USER_DIR).glob("*.toml"))
    return [parse_manifest(f) for f in files]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_lock(cache: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads((cache / LOCK_NAME).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{cache / LOCK_NAME}: {exc}") from None


def write_lock(cache: Path, lock: dict[str, dict[str, Any]]) -> None:
    tmp = cache / (LOCK_NAME + ".tmp")
    tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    tmp.replace(cache / LOCK_NAME)


def model_file(cache: Path, manifest: Manifest, size: int, precision: str = "fp32") -> Path:
    return (cache / USER_DIR if manifest.user else cache) / manifest.onnx_name(size, precision)


def status(
    cache: Path,
    manifest: Manifest,
    size: int,
    lock: dict[str, Any] | None = None,
    precision: str = "fp32",
) -> str:
    """'ok', 'missing' or 'checksum mismatch' for one exported file."""
    path = model_file(cache, manifest, size, precision)
    entry = (lock if lock is not None else read_lock(cache)).get(str(path.relative_to(cache)))
    if not path.exists() or entry is None:
        return "missing"
    if entry.get("size") != path.stat().st_size or entry.get("sha256") != sha256_file(path):
        return "checksum mismatch"
    return "ok"


def verified_path(cache: Path, manifest: Manifest, size: int, precision: str = "fp32") -> Path:
    """The ONNX file if built and intact; otherwise a clear error naming ``make models``."""
    st = status(cache, manifest, size, precision=precision)
    if st != "ok":
        raise ModelMissing(
            f"model {manifest.name} ({manifest.onnx_name(size, precision)}) is {st} in {cache}: "
            "run `make models` (or `vms models build`)"
        )
    return model_file(cache, manifest, size, precision)


def built_precisions(cache: Path, manifest: Manifest, size: int) -> list[str]:
    """The precisions of ``manifest`` at ``size`` that are built and intact."""
    lock = read_lock(cache)
    return [p for p in manifest.precisions if status(cache, manifest, size, lock, p) == "ok"]


def provider_of(label: str, manifests: list[Manifest]) -> Manifest | None:
    """The model that feeds a rule label: user models override shipped ones."""
    found = [m for m in manifests if label in m.labels()]
    return found[-1] if found else None
