"""A stored picture as an HTTP answer: a presigned redirect on S3, the bytes otherwise.

Alarm, warning and intake pictures are served the same way, each behind its own scope check.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Response, status
from fastapi.responses import RedirectResponse

from storage.objects import ObjectNotFound, ObjectStore, ObjectStoreError
from vms.uplink.validation import image_format

CACHE = {"Cache-Control": "private, max-age=3600"}


def _media_type(data: bytes) -> str:
    return {"PNG": "image/png", "BMP": "image/bmp"}.get(image_format(data) or "", "image/jpeg")


def picture_response(
    objects: ObjectStore,
    key: str,
    missing: str = "picture not available",
    fallback: Callable[[str], bytes | None] | None = None,
) -> Response:
    """``fallback`` is asked for a picture not in the store (yet): the alarm spool."""
    try:
        url = objects.url(key)
        if url:
            return RedirectResponse(url, status.HTTP_307_TEMPORARY_REDIRECT)
        data = objects.get(key)
    except (ObjectNotFound, ObjectStoreError):
        data = fallback(key) if fallback is not None else None
        if data is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, missing) from None
    return Response(data, media_type=_media_type(data), headers=CACHE)
