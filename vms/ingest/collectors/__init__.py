"""Collectors: one task per enterprise gateway that turns its protocol's data into readings.

Modbus TCP / RTU (``modbus``), OPC UA (``opcua``) and MQTT (``mqtt``) pull or subscribe;
the HTTP push gateway needs no collector (``api/routers/ingest_push.py`` receives it).
``manager.CollectorManager`` starts, restarts and stops them as gateways change.

The protocol libraries log every refused connection with a traceback and a frame dump;
a collector reports the same failure once, in its own words, on the gateway
(``last_error``) and in our log, so their loggers are kept to critical messages.
"""

from __future__ import annotations

import logging

for _name in ("pymodbus", "asyncua"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)
