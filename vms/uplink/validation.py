"""What a strict receiver checks in a Table 2/3/4 post (spec/alarms.md §2-§4).

One set of rules for both receivers we have: the reference receiver the tests and the
benchmarks post to, and the node's own intake, where a city or province running this
project takes the tables of the counties and enterprises below it.  An empty list of
errors means the record is valid.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP

import cv2
import numpy as np

from vms.alarms import codes
from vms.alarms.images import MAX_IMAGE_BYTES

from . import tables

TABLE_FIELDS = {
    tables.TABLE2: (
        tables.DEVICE_ID,
        tables.DEVICE_CODE,
        tables.COMPANY_CODE,
        tables.DEVICE_NAME,
        tables.DEVICE_DESC,
    ),
    tables.TABLE3: (tables.DEVICE_CODE, tables.DATE_TIME, tables.RUN_STATUS),
    tables.TABLE4: (
        tables.ALARM_ID,
        tables.ALARM_TYPE,
        tables.ALARM_STATUS,
        tables.ALARM_TIME,
        tables.DEVICE_CODE,
        tables.VIDEO_CODE,
    ),
}
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")  # spec: PNG, JPG, JPEG, BMP


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """Form fields and the ``ALARM_IMAGE`` part of a multipart or JSON body.

    Raises ``ValueError`` for a body that is neither, or is broken.
    """
    if content_type.startswith("application/json"):
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("JSON body is not an object")
        image_b64 = data.pop(tables.ALARM_IMAGE, None)
        try:
            image = base64.b64decode(image_b64, validate=True) if image_b64 else None
        except (binascii.Error, TypeError):
            raise ValueError("ALARM_IMAGE is not base64") from None
        return {k: str(v) for k, v in data.items()}, image
    if not content_type.startswith("multipart/form-data"):
        raise ValueError(f"unexpected content type {content_type!r}")
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not msg.is_multipart():
        raise ValueError("multipart body without parts")
    fields: dict[str, str] = {}
    image = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == tables.ALARM_IMAGE:
            image = payload
        elif name:
            fields[str(name)] = payload.decode("utf-8")
    return fields, image


def is_time(value: str) -> bool:
    try:
        datetime.strptime(value, tables.DATETIME_FORMAT)
    except ValueError:
        return False
    return len(value) == 19


def image_format(image: bytes) -> str | None:
    """PNG, JPEG or BMP by their signatures; None for anything else."""
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if image.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if image.startswith(b"BM"):
        return "BMP"
    return None


def _lengths(fields: dict[str, str], names: tuple[str, ...]) -> list[str]:
    errors = []
    for name in names:
        limit = tables.LENGTHS.get(name)
        if limit is not None and len(fields.get(name, "")) > limit:
            errors.append(f"{name} longer than {limit}")
    return errors


def validate_table4(
    fields: dict[str, str], image: bytes | None, max_image_bytes: int = MAX_IMAGE_BYTES
) -> list[str]:
    """Every Table 4 rule of spec/alarms.md §4; an empty list means valid."""
    errors = []
    if not codes.is_uuid36(fields.get(tables.ALARM_ID, "")):
        errors.append("ALARM_ID is not a uuid36")
    if fields.get(tables.ALARM_STATUS) not in ("0", "1"):
        errors.append("ALARM_STATUS not 0/1")
    code = fields.get(tables.ALARM_TYPE, "")
    if len(code) > 2 or not any(code in t for t in codes.CODE_TABLES.values()):
        errors.append(f"ALARM_TYPE {code!r} in no code table")
    if not is_time(fields.get(tables.ALARM_TIME, "")):
        errors.append("ALARM_TIME not yyyy-MM-dd HH:mm:ss")
    if len(fields.get(tables.DEVICE_CODE, "")) > 36:
        errors.append("DEVICE_CODE longer than 36")
    if not codes.is_uplink_video_code(fields.get(tables.VIDEO_CODE, "")):
        errors.append("VIDEO_CODE not 9-digit enterprise code + 0132 + 7-digit serial")
    if not image:
        errors.append("ALARM_IMAGE missing")
    elif len(image) > max_image_bytes:
        errors.append(f"ALARM_IMAGE over {max_image_bytes:,} bytes")
    elif image_format(image) is None:
        errors.append("ALARM_IMAGE not PNG, JPEG or BMP")
    elif cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        errors.append("ALARM_IMAGE does not decode")
    return errors


def validate_table3(fields: dict[str, str]) -> list[str]:
    errors = _lengths(fields, TABLE_FIELDS[tables.TABLE3])
    if not fields.get(tables.DEVICE_CODE):
        errors.append("DEVICE_CODE missing")
    if not is_time(fields.get(tables.DATE_TIME, "")):
        errors.append("DATE_TIME not yyyy-MM-dd HH:mm:ss")
    if fields.get(tables.RUN_STATUS) not in ("0", "1"):
        errors.append("RUN_STATUS not 0/1")
    return errors


def validate_table2(fields: dict[str, str]) -> list[str]:
    errors = _lengths(fields, TABLE_FIELDS[tables.TABLE2])
    if not codes.is_uuid36(fields.get(tables.DEVICE_ID, "")):
        errors.append("DEVICE_ID is not a uuid36")
    for name in (tables.DEVICE_CODE, tables.COMPANY_CODE, tables.DEVICE_NAME):
        if not fields.get(name):
            errors.append(f"{name} missing")
    return errors


def validate(path: str, fields: dict[str, str], image: bytes | None) -> list[str]:
    """The rules of the table a URL path ends with; other paths take anything."""
    if path.endswith(tables.TABLE4):
        return validate_table4(fields, image)
    if path.endswith(tables.TABLE3):
        return validate_table3(fields)
    if path.endswith(tables.TABLE2):
        return validate_table2(fields)
    return []
