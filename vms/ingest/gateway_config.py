"""What a gateway's ``config`` and a point's ``source`` may hold, per protocol.

The API validates with these models before anything is stored, and the collectors read
the validated values, so a typo in a register map is a 422 at configuration time instead of
a silent gap in the data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storage.sensor_models import GatewayProtocol


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModbusTcpConfig(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)  # slave id
    poll_s: float = Field(5.0, gt=0, le=300)
    timeout_s: float | None = Field(None, gt=0)  # empty → ingest.poll_timeout_s
    max_block: int = Field(100, ge=1, le=125)  # registers per read request


class ModbusRtuConfig(_Strict):
    """RTU frames over an RS-485 serial line, or over TCP through a serial device server."""

    mode: Literal["serial", "tcp"] = "serial"
    serial_port: str = ""  # e.g. /dev/ttyUSB0 (mode serial)
    baudrate: int = Field(9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    host: str = ""  # mode tcp
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    poll_s: float = Field(5.0, gt=0, le=300)
    timeout_s: float | None = Field(None, gt=0)
    max_block: int = Field(100, ge=1, le=125)

    @model_validator(mode="after")
    def _where(self) -> ModbusRtuConfig:
        if self.mode == "serial" and not self.serial_port:
            raise ValueError("serial_port is required in serial mode")
        if self.mode == "tcp" and not self.host:
            raise ValueError("host is required in tcp mode")
        return self


class OpcUaConfig(_Strict):
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    username: str = ""
    password: str = ""
    publish_interval_ms: int = Field(1000, ge=50, le=60000)
    timeout_s: float | None = Field(None, gt=0)


class MqttConfig(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    topics: list[str] = Field(default_factory=lambda: ["#"], min_length=1)
    client_id: str = ""
    tls: bool = False
    qos: Literal[0, 1] = 1


class HttpPushConfig(_Strict):
    pass


GATEWAY_CONFIGS: dict[GatewayProtocol, type[_Strict]] = {
    GatewayProtocol.modbus_tcp: ModbusTcpConfig,
    GatewayProtocol.modbus_rtu: ModbusRtuConfig,
    GatewayProtocol.opcua: OpcUaConfig,
    GatewayProtocol.mqtt: MqttConfig,
    GatewayProtocol.http_push: HttpPushConfig,
}

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]


class ModbusSource(_Strict):
    """Where a point's value sits in the device, and how to turn registers into a value."""

    function: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)  # 0-based protocol address
    type: RegisterType = "uint16"
    word_order: Literal["big", "little"] = "big"  # which register holds the high word
    byte_order: Literal["big", "little"] = "big"  # byte order inside each register
    scale: float = 1.0  # value = raw * scale + offset
    offset: float = 0.0
    unit_id: int | None = Field(None, ge=0, le=255)  # overrides the gateway's slave id

    @model_validator(mode="after")
    def _bits(self) -> ModbusSource:
        bit_function = self.function in ("coil", "discrete")
        if bit_function != (self.type == "bool"):
            raise ValueError("coil and discrete points are type bool; registers are not")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits) the value occupies."""
        return 2 if self.type in ("int32", "uint32", "float32") else 1


class OpcUaSource(_Strict):
    node_id: str = Field(min_length=3)  # e.g. "ns=2;s=Tank1.Level"


class MqttSource(_Strict):
    """A point fed by a topic: the payload is the value, or JSON with ``json_key``."""

    topic: str = ""  # empty → rows with this point's tag inside JSON payloads
    json_key: str = "value"


class NoSource(_Strict):
    pass


POINT_SOURCES: dict[GatewayProtocol, type[_Strict]] = {
    GatewayProtocol.modbus_tcp: ModbusSource,
    GatewayProtocol.modbus_rtu: ModbusSource,
    GatewayProtocol.opcua: OpcUaSource,
    GatewayProtocol.mqtt: MqttSource,
    GatewayProtocol.http_push: NoSource,
}


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def validate_gateway_config(
    protocol: GatewayProtocol | str, config: dict[str, Any]
) -> dict[str, Any]:
    """The config with defaults filled in; ValueError naming the field otherwise."""
    model = GATEWAY_CONFIGS[GatewayProtocol(protocol)]
    try:
        return model.model_validate(config or {}).model_dump()
    except ValidationError as exc:
        raise ValueError(f"{protocol} config {_first_error(exc)}") from None


def validate_point_source(
    protocol: GatewayProtocol | str, source: dict[str, Any]
) -> dict[str, Any]:
    model = POINT_SOURCES[GatewayProtocol(protocol)]
    try:
        return model.model_validate(source or {}).model_dump()
    except ValidationError as exc:
        raise ValueError(f"{protocol} source {_first_error(exc)}") from None


def modbus_source(source: dict[str, Any]) -> ModbusSource:
    return ModbusSource.model_validate(source)
