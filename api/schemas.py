"""Request and response bodies of the foundation routers (auth, orgs, users, devices)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analyzers.config import AnalysisConfig
from sip import ids
from storage.models import DeviceStatus, OrgKind, Role
from vms.config import check_device_password
from vms.recording.schedule import ScheduleList, ScheduleWindow


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    password_change_required: bool = False  # only /api/auth/password works until it is changed


class MachineTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_days: int = Field(365, ge=1, le=3650)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


UPLINK_CODE = r"^[\x21-\x7e]*$"  # printable ASCII, no spaces: what a receiver files by


class OrgIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error
    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind
    parent_id: int | None = None
    code: str = Field("", max_length=36)
    # DEVICE_CODE of the site's analysis device upward (Tables 2-4); "" → derived
    uplink_device_code: str = Field("", max_length=36, pattern=UPLINK_CODE)


class OrgPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    code: str | None = Field(None, max_length=36)
    uplink_device_code: str | None = Field(None, max_length=36, pattern=UPLINK_CODE)


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    kind: OrgKind
    parent_id: int | None
    code: str
    uplink_device_code: str
    path: str
    # on PATCH: the site's cameras with analysis on that have no VIDEO_CODE (fix each one)
    cameras_without_video_code: list[str] = []


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(
        min_length=1, max_length=256
    )  # policy: storage.passwords.password_problem
    role: Role
    org_id: int | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: Role
    org_id: int | None
    is_active: bool
    must_change_password: bool = False
    locked_until: datetime | None = None
    failed_logins: int = 0


class MeOut(UserOut):
    password_change_required: bool  # forced, or the password is older than allowed


class UserPatch(BaseModel):
    """An administrator's change to a user; each one that alters what its tokens allow
    (role, organisation, disabling, a new password) revokes the tokens it holds."""

    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    org_id: int | None = None
    move_to_top: bool = Field(False, description="org_id null: no organisation (global admin)")
    is_active: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=256)
    unlock: bool = False


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error
    device_id: str = Field(pattern=ids.PATTERN)
    name: str = Field("", max_length=200)
    org_id: int | None = None
    # omitted → a random one, returned once in the answer (there is no default password)
    sip_password: str | None = Field(None, max_length=128)
    status: DeviceStatus = DeviceStatus.active

    @field_validator("sip_password")
    @classmethod
    def _check_password(cls, v: str | None) -> str | None:
        return check_device_password(v) if v is not None else v


class DevicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error
    name: str | None = Field(None, max_length=200)
    org_id: int | None = None
    sip_password: str | None = Field(None, max_length=128)  # null → sip.password applies
    status: DeviceStatus | None = None
    charset: str | None = Field(None, pattern=r"^(GB2312|GBK|GB18030|UTF-8)$")

    @field_validator("sip_password")
    @classmethod
    def _check_password(cls, v: str | None) -> str | None:
        return check_device_password(v) if v is not None else v


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: str
    name: str
    org_id: int | None
    status: DeviceStatus
    online: bool
    transport: str
    remote_host: str
    remote_port: int
    manufacturer: str
    model: str
    firmware: str
    channel_count: int
    registered_at: datetime | None
    keepalive_at: datetime | None


class DeviceCreated(DeviceOut):
    """The answer to adding a device: its SIP password, shown this once."""

    sip_password: str | None


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    channel_id: str
    name: str
    status: str
    manufacturer: str
    model: str
    ptz_type: int
    longitude: float | None
    latitude: float | None
    record_enabled: bool
    analysis: dict
    record_schedule: list[dict] = []  # as stored: ScheduleWindow items
    uplink_video_code: str = ""  # the province's code for the camera, when set by hand
    video_code: str | None = None  # VIDEO_CODE its alarms go upward with; None → not reportable


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error
    name: str | None = Field(None, max_length=200)
    record_enabled: bool | None = None
    # validated like PUT /api/analyzers/channels/{id}; null → analysis off
    analysis: AnalysisConfig | None = None
    record_schedule: ScheduleList | None = None  # [] or null → record around the clock
    # VIDEO_CODE the province knows the camera by (checked against its site); "" → none
    uplink_video_code: str | None = Field(None, max_length=36)

    @field_validator("record_schedule", mode="after")
    @classmethod
    def _schedule_null_is_empty(cls, value: list[ScheduleWindow] | None) -> list[ScheduleWindow]:
        return value or []
